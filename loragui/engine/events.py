"""Typed events reported by the training loop and other long jobs.

A terminal prints them, the window draws them. They carry plain Python values
and numpy arrays only (never live tensors), so they can cross threads and be
serialised as JSON lines: ``loragui train --events jsonl`` writes them with
:class:`JsonLinesWriter`, the window's training child reads them back with
:func:`event_from_line` and :func:`read_previews`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .runrecord import PREVIEWS


@dataclass
class Preview:
    """One validation image with its ground truth and the current prediction."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8, the normalised input (not inverted: as the user sees it)
    mask: np.ndarray  # (H, W) bool ground truth
    prediction: np.ndarray  # (H, W) float32 foreground probability in [0, 1]
    # A run of several classes: the predicted class of each pixel, (H, W) uint8, and the
    # classes' colours ("#rrggbb", index = class); the previews colour each class.
    classes: np.ndarray | None = None
    colours: tuple[str, ...] = ()
    # A run of objects: how many the prediction holds and how many its mask holds (both
    # split as predict splits an objects model's classes); None for other runs.
    predicted_objects: int | None = None
    true_objects: int | None = None


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
    # Data parallel (torchrun / --devices): processes, batch per process, batch per
    # optimiser step (batch × processes) and the peak learning rate used (--lr scaled).
    world_size: int = 1
    batch_size: int = 0
    effective_batch_size: int = 0
    peak_lr: float = 0.0
    # A run of several classes: what its masks hold (MaskMeaning.to_dict(): the classes'
    # names and colours, index = class), so that a window draws each in its colour;
    # None for foreground/background.
    masks: dict[str, Any] | None = None


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
    seconds: float = 0.0  # this validation's cost
    elapsed: float = 0.0  # seconds since the run started (a resumed run counts its first part)
    # JSON lines carry no arrays: ``loragui train --events jsonl`` writes the previews to
    # this .npz file (see write_previews) and names it here instead.
    previews_file: str | None = None
    # K classes: name -> {"dice", "iou", ...} of this validation (``dice`` is then their
    # mean over the foreground classes); None for foreground/background.
    classes: dict[str, dict[str, float]] | None = None


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
    # Why the run ended, for a person ("no improvement for 6 validations; best Dice 0.870
    # at epoch 12"); early_stopped: it ended by the early-stopping rule, before its maximum.
    reason: str = ""
    early_stopped: bool = False


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
    # within the current item (an image predicted in tiles): tiles done of ``tiles``
    tile: int = 0
    tiles: int = 0


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


EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    RunStarted, StepEvent, EpochEvent, LogEvent, RunFinished, RunFailed, ProgressEvent)}


def event_from_dict(data: dict[str, Any]) -> Event:
    """The typed event back from :func:`event_to_dict`'s dict (for example one JSON line).

    Unknown keys are ignored (a newer writer may add fields); a missing required
    field or an unknown ``"event"`` raises ``ValueError``. Previews given inline
    (lists) become :class:`Preview` objects with numpy arrays again.
    """
    if not isinstance(data, dict):
        raise ValueError(f"an event is a JSON object, not {type(data).__name__}")
    cls = EVENT_TYPES.get(data.get("event"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown event type {data.get('event')!r}")
    known = {f.name for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in known}
    if cls is EpochEvent:
        values["previews"] = [_preview_from_dict(p) for p in values.get("previews") or []]
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"malformed {cls.__name__}: {exc}") from None


def event_to_line(event: Event) -> str:
    """One JSON line (without its newline) for ``event``."""
    return json.dumps(event_to_dict(event))


def event_from_line(line: str) -> Event:
    """The typed event of one JSON line; ``ValueError`` for a line that is not one."""
    return event_from_dict(json.loads(line))


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def _preview_from_dict(p: dict[str, Any]) -> Preview:
    classes = p.get("classes")
    return Preview(str(p["name"]), np.asarray(p["image"], dtype=np.uint8),
                   np.asarray(p["mask"], dtype=bool), np.asarray(p["prediction"], dtype=np.float32),
                   None if classes is None else np.asarray(classes, dtype=np.uint8),
                   tuple(str(c) for c in p.get("colours") or ()),
                   _count(p.get("predicted_objects")), _count(p.get("true_objects")))


# Previews as files: one .npz per epoch holding plain arrays only (``names`` a unicode
# array, ``image_<i>``, ``mask_<i>``, ``prediction_<i>`` per preview: the validation
# images may differ in size; for classes also ``classes_<i>``, with one ``colours``
# array; for objects ``objects_<i>``, the predicted and the true count), so
# ``np.load(..., allow_pickle=False)`` reads it. A file without a preview's
# ``objects_<i>`` (an earlier loragui's) reads as no counts.

def write_previews(path: str | os.PathLike, previews: list[Preview]) -> Path:
    """Write ``previews`` to ``path`` (.npz) atomically: readers never see half a file."""
    from .atomic import atomic_write  # torch-free

    arrays: dict[str, np.ndarray] = {"names": np.array([p.name for p in previews], dtype=str)}
    for i, p in enumerate(previews):
        arrays[f"image_{i}"] = np.ascontiguousarray(p.image, dtype=np.uint8)
        arrays[f"mask_{i}"] = np.ascontiguousarray(p.mask, dtype=bool)
        arrays[f"prediction_{i}"] = np.ascontiguousarray(p.prediction, dtype=np.float32)
        if p.classes is not None:
            arrays[f"classes_{i}"] = np.ascontiguousarray(p.classes, dtype=np.uint8)
            arrays["colours"] = np.array(p.colours, dtype=str)
        if p.predicted_objects is not None and p.true_objects is not None:
            arrays[f"objects_{i}"] = np.array([p.predicted_objects, p.true_objects],
                                              dtype=np.int64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: savez would append ".npz" to a name
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)


def read_previews(path: str | os.PathLike) -> list[Preview]:
    """The previews :func:`write_previews` wrote (never unpickles anything)."""
    with np.load(path, allow_pickle=False) as data:
        names = [str(n) for n in data["names"]]
        colours = tuple(str(c) for c in data["colours"]) if "colours" in data else ()
        previews = []
        for i, name in enumerate(names):
            counts = data[f"objects_{i}"] if f"objects_{i}" in data else (None, None)
            previews.append(Preview(name, data[f"image_{i}"], data[f"mask_{i}"],
                                    data[f"prediction_{i}"],
                                    data[f"classes_{i}"] if f"classes_{i}" in data else None,
                                    colours, _count(counts[0]), _count(counts[1])))
        return previews


def previews_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """Where the JSON-lines writer puts an epoch's previews: ``RUN/previews/epoch_NNNN.npz``."""
    return Path(run_dir).absolute() / PREVIEWS / f"epoch_{epoch:04d}.npz"


class JsonLinesWriter:
    """Writes events as JSON lines, flushed one by one, for another program to read.

    An epoch's previews (arrays) go to a file under ``run_dir`` (:func:`previews_path`),
    named in the line's ``previews_file``; a preview file that cannot be written is
    reported to ``on_warning`` and the run goes on without it. When the reader has gone
    (a broken pipe) :attr:`reader_gone` is set, nothing more is written, and what the
    process prints later goes to the null device instead of failing.
    """

    def __init__(self, run_dir: str | os.PathLike, stream: Any = None,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.run_dir = run_dir
        self.stream = stream if stream is not None else sys.stdout
        self.on_warning = on_warning or (lambda message: print(message, file=sys.stderr))
        self.reader_gone = False

    def write(self, event: Event) -> None:
        if isinstance(event, EpochEvent) and event.previews:
            previews, event.previews = event.previews, []  # arrays: to a file, not the line
            event.previews_file = self._write_previews(event.epoch, previews)
        if self.reader_gone:
            return
        try:
            self.stream.write(event_to_line(event) + "\n")
            self.stream.flush()
        except (BrokenPipeError, OSError):
            self.reader_gone = True
            with contextlib.suppress(OSError, ValueError):  # what is left goes nowhere
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())

    def _write_previews(self, epoch: int, previews: list[Preview]) -> str | None:
        try:
            return str(write_previews(previews_path(self.run_dir, epoch), previews))
        except Exception as exc:  # noqa: BLE001 - previews are not worth stopping a run for
            self.on_warning(f"warning: the previews of epoch {epoch} were not written: {exc}")
            return None
