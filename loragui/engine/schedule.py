"""How long a run is and how fast it learns: steps per epoch, total steps, and the
learning-rate schedule. Pure functions of plain numbers (no torch), so the window
can plan a run before torch has loaded."""

from __future__ import annotations

import math

MAX_VALIDATIONS = 40  # per run by default: validation must not cost more than training
# On the CPU an epoch is at most this many steps, and a default run of 40 epochs at most
# 1,000 steps. Large images would otherwise make epochs of a hundred steps (one crop per
# 128² of image), a planned length of 4,000 steps and a learning rate that decays over
# all of them: on DSB2018 brightfield (1024² images) the Dice reached its best at step
# 1,372 of 3,920. With the cap the decay fits the run a laptop can afford, and the run
# is validated (and can stop) every 25 steps. README, "When a run ends", has the figures.
CPU_MAX_STEPS_PER_EPOCH = 25


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.02 (a small floor keeps late steps useful)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def default_steps_per_epoch(n_train: int, batch_size: int, crop_size: int, mean_area: float,
                            total_steps: int | None = None, device_type: str = "cpu") -> int:
    """About one crop per image-area-worth of pixels per epoch, at least 10 steps (on
    the CPU at most CPU_MAX_STEPS_PER_EPOCH), and few enough epochs (validations,
    checkpoints) that they stay a small part of the run."""
    crops = n_train * max(1.0, mean_area / float(crop_size * crop_size))
    steps = max(10, math.ceil(crops / batch_size))
    if device_type == "cpu":
        steps = min(steps, CPU_MAX_STEPS_PER_EPOCH)
    if total_steps:
        steps = max(steps, math.ceil(total_steps / MAX_VALIDATIONS))
    return steps
