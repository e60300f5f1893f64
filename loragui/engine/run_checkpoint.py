"""A training run's state and its checkpoint: what is saved at each epoch end, and
how a resumed run checks the checkpoint against its settings and takes its state back.

:class:`~.train.Trainer` holds a :class:`RunState` and calls these with its parts.
The file's fields, writing and reading are :mod:`.checkpoint`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import Checkpoint
from .config import OPTIONS_BY_NAME, TrainConfig
from .early_stop import EarlyStop
from .errors import LoraGuiError
from .events import LogEvent
from .faults import format_lr
from .formats import now_iso
from .runrecord import has_checkpoint
from .sampler import CropSampler

# The settings that shape what trains: a checkpoint resumes only with the same.
# (--width and --depth too, for --full from scratch.)
SHAPING = ("full", "rank", "alpha", "rslora", "targets", "train_modules", "train_bias",
           "auto_invert")


@dataclass
class RunState:
    """What a run has done so far; a checkpoint carries it across an interruption."""
    batch_size: int  # halved when the device runs out of memory
    step: int = 0
    best_dice: float | None = None
    best_epoch: int = 0
    base_dice: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_loss_sum: float = 0.0  # training loss of the epoch in progress (kept across resume)
    epoch_loss_n: int = 0
    lr_scale: float = 1.0  # halved at each back-off from a non-finite loss
    backoffs: int = 0
    faults: list[str] = field(default_factory=list)  # what kept the run going, for run.json


@dataclass
class Resumed:
    """What a resumed run takes back besides its :class:`RunState`."""
    best_written: bool  # the best adapter (or model) is on disk
    early: EarlyStop | None
    elapsed_before: float  # the seconds the run had trained before


def save_checkpoint(out: Path, *, config: TrainConfig, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, sampler: CropSampler, state: RunState,
                    best_written: bool, device: torch.device, base_sha256: str | None,
                    total_steps: int, steps_per_epoch: int, epochs: int, fingerprint: str,
                    world_size: int, early: EarlyStop | None) -> None:
    st = state
    Checkpoint(
        config=config.to_dict(),
        trainable={k: p.detach().cpu() for k, p in model.named_parameters() if p.requires_grad},
        optimizer=optimizer.state_dict(), sampler=sampler.state_dict(),
        step=st.step, best_dice=st.best_dice, best_epoch=st.best_epoch,
        base_dice=st.base_dice, history=st.history, best_written=best_written,
        torch_rng=torch.get_rng_state(), base_sha256=base_sha256,
        total_steps=total_steps, steps_per_epoch=steps_per_epoch,
        epochs=epochs, saved=now_iso(),
        epoch_loss=[st.epoch_loss_sum, st.epoch_loss_n], lr_scale=st.lr_scale,
        backoffs=st.backoffs, batch_size=st.batch_size, faults=st.faults,
        fingerprint=fingerprint, world_size=world_size,
        cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        early_stop=early.state_dict() if early is not None else None,
    ).save(out)


def checked_checkpoint(out: Path, config: TrainConfig, base_sha256: str | None,
                       model: torch.nn.Module) -> Checkpoint:
    """The checkpoint in ``out``, refused (LoraGuiError saying what to do) when it was
    made with another base model or other settings that shape what trains."""
    ckpt = Checkpoint.load(out)
    if ckpt.base_sha256 != base_sha256:
        raise LoraGuiError(f"the checkpoint in {out} was made with another base model; "
                           "use the same --base as the first run, or another --out")
    shaping = SHAPING + (("width", "depth") if config.full and not config.base else ())
    changed = [(name, ckpt.config[name], getattr(config, name)) for name in shaping
               if name in ckpt.config and ckpt.config[name] != getattr(config, name)]
    if changed:
        then = ", ".join(f"{OPTIONS_BY_NAME[n].flag} {_shown(old)}" for n, old, _ in changed)
        now = ", ".join(f"{OPTIONS_BY_NAME[n].flag} {_shown(new)}" for n, _, new in changed)
        raise LoraGuiError(f"the checkpoint in {out} was made with {then}, not {now}: "
                           "resume with the settings of the first run, or use another --out")
    own = dict(model.named_parameters())
    if set(ckpt.trainable) != {k for k, p in own.items() if p.requires_grad} or any(
            own[k].shape != v.shape for k, v in ckpt.trainable.items()):
        raise LoraGuiError("the checkpoint was made with other settings (rank, layers, --full); "
                           "resume with the same settings, or use another --out")
    return ckpt


def restore_training(ckpt: Checkpoint, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, sampler: CropSampler,
                     device: torch.device) -> None:
    """The trainable weights, the optimizer, the crop sampler and the random state."""
    own = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in ckpt.trainable.items():
            own[k].copy_(v.to(own[k].device))
    optimizer.load_state_dict(ckpt.optimizer)
    sampler.load_state_dict(ckpt.sampler)
    torch.set_rng_state(ckpt.torch_rng)
    if ckpt.cuda_rng is not None and device.type == "cuda":
        with contextlib.suppress(Exception):
            torch.cuda.set_rng_state(ckpt.cuda_rng, device)


def resume_state(ckpt: Checkpoint, state: RunState, *, config: TrainConfig,
                 early: EarlyStop | None, peak_lr: float, fingerprint: str,
                 world_size: int) -> Iterator[LogEvent]:
    """Takes the checkpoint's state into ``state``, saying what differs from an
    uninterrupted run. Returns :class:`Resumed`."""
    st = state
    st.step = int(ckpt.step)
    st.best_dice = ckpt.best_dice
    st.best_epoch = int(ckpt.best_epoch)
    st.base_dice = ckpt.base_dice
    st.history = ckpt.history
    st.epoch_loss_sum, st.epoch_loss_n = ckpt.epoch_loss
    st.faults = ckpt.faults
    trained = [r for r in st.history if r["epoch"] > 0]
    elapsed_before = float(trained[-1].get("elapsed") or 0.0) if trained else 0.0
    if early is not None:
        if ckpt.early_stop is not None:
            early = EarlyStop.from_state(ckpt.early_stop)
        else:  # the rule was off, or the checkpoint predates it: its state from the history
            for r in trained:
                early.update(r["epoch"], r["dice"])
    old = ckpt.config
    best = "" if st.best_dice is None else (
        f" (best so far: epoch {st.best_epoch}, Dice {st.best_dice:.3f})")
    yield LogEvent(f"resumed from step {st.step}{best}")
    if old.get("lr") == config.lr:  # a changed --lr starts the back-offs afresh
        st.lr_scale = float(ckpt.lr_scale)
        st.backoffs = int(ckpt.backoffs)
        if st.lr_scale != 1.0:
            yield LogEvent(f"the learning rate stays at a peak of "
                           f"{format_lr(peak_lr * st.lr_scale)}, as lowered after "
                           "non-finite losses before the interruption", "warning")
    if old.get("batch_size") == config.batch_size and ckpt.batch_size < st.batch_size:
        st.batch_size = int(ckpt.batch_size)
        yield LogEvent(f"the batch size stays at {st.batch_size}, as reduced after running "
                       "out of memory before the interruption", "warning")
    if ckpt.fingerprint != fingerprint:
        yield LogEvent("the images or masks changed since this run's checkpoint was saved; "
                       "training continues on them as they are now (the result will differ "
                       "from an uninterrupted run)", "warning")
    if ckpt.world_size != world_size:
        yield LogEvent(f"this run was started in {ckpt.world_size} process(es) and continues "
                       f"in {world_size}: the effective batch and learning rate change "
                       "accordingly (the result will differ from an uninterrupted run)",
                       "warning")
    return Resumed(best_written=bool(ckpt.best_written), early=early,
                   elapsed_before=elapsed_before)


def damaged_checkpoint(run_dir: Path) -> str | None:
    """Why the checkpoint in ``run_dir`` cannot be resumed from, when it is there and
    damaged; None otherwise."""
    if not has_checkpoint(run_dir):
        return None
    try:
        Checkpoint.load(run_dir, mmap=True)
    except LoraGuiError as exc:
        return str(exc).split("; delete it")[0]
    return None


def _shown(value: Any) -> str:
    return ",".join(value) or "''" if isinstance(value, list) else str(value)
