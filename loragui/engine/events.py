"""Typed events reported by the training loop and other long jobs.

A terminal prints them, the window draws them. They carry plain Python values
and numpy arrays only (never live tensors), so they can cross threads and be
serialised as JSON lines.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class Preview:
    """One validation image with its ground truth and the current prediction."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8, the normalised input as shown to the model
    mask: np.ndarray  # (H, W) bool ground truth
    prediction: np.ndarray  # (H, W) float32 foreground probability in [0, 1]


@dataclass
class RunStarted:
    run_dir: str
    device: str
    n_train: int
    n_val: int
    epochs: int
    steps_per_epoch: int
    total_steps: int
    start_step: int  # > 0 when resuming
    trainable_params: int
    total_params: int
    mode: str  # "lora" or "full"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepEvent:
    step: int  # 1-based global step just finished
    total_steps: int
    epoch: int  # 1-based
    loss: float
    lr: float
    images_per_s: float
    eta_s: float


@dataclass
class EpochEvent:
    """Validation after an epoch. Epoch 0 is the base model before training."""

    epoch: int
    epochs: int
    step: int
    train_loss: float | None
    val_loss: float | None
    dice: float | None  # mean per image
    iou: float | None
    dice_pooled: float | None
    iou_pooled: float | None
    best_epoch: int
    best_dice: float | None
    is_best: bool
    previews: list[Preview] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class LogEvent:
    message: str
    level: str = "info"  # "info" | "warning" | "error"


@dataclass
class RunFinished:
    run_dir: str
    output: str  # adapter folder or model file written
    best_epoch: int
    best_dice: float | None
    base_dice: float | None
    steps: int
    seconds: float
    stopped: bool = False  # True when the user stopped the run early


@dataclass
class RunFailed:
    message: str
    details: str = ""
    run_dir: str | None = None
    output: str | None = None  # best adapter kept so far, if any


@dataclass
class ProgressEvent:
    """Progress of a non-training job (scanning, predicting, exporting)."""

    done: int
    total: int
    message: str = ""


Event = RunStarted | StepEvent | EpochEvent | LogEvent | RunFinished | RunFailed | ProgressEvent


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict with the event's type under ``"event"`` (arrays as lists)."""

    def convert(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    data = convert(asdict(event))
    data["event"] = type(event).__name__
    return data
