"""A resumed run's past: the curves, the base model's Dice and the newest
previews of the epochs it had finished, read back from its run folder
(metrics.csv and previews/) so the training view goes on where it left off.

The files are read in the training's worker thread, just after the run has
started (its view is then reset), and handed to the GUI thread as one
:class:`EarlierEpochs` on the event queue; :func:`show_earlier` draws them.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EarlierEpochs:
    """What a run folder holds of the epochs before a resume."""

    epochs: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    dice: list[float | None] = field(default_factory=list)
    train_loss: list[float | None] = field(default_factory=list)
    previews: list = field(default_factory=list)  # of preview_epoch
    preview_epoch: int = 0

    def best(self) -> tuple[int | None, float | None]:
        """The trained epoch with the highest Dice, and that Dice."""
        scored = [(d, e) for e, d in zip(self.epochs, self.dice, strict=True)
                  if e > 0 and d is not None]
        if not scored:
            return None, None
        dice, epoch = max(scored)
        return epoch, dice


def read_earlier(run_dir: str) -> EarlierEpochs:
    """The epochs ``run_dir`` records, and the newest previews it saved (worker thread)."""
    from loragui.engine.events import previews_path, read_previews
    from loragui.engine.runcompare import read_curves

    curves = read_curves(run_dir)
    earlier = EarlierEpochs(epochs=[int(e) for e in curves.epochs],
                            steps=[s or 0 for s in curves.steps], val_loss=list(curves.val_loss),
                            dice=list(curves.dice), train_loss=list(curves.train_loss))
    if 0 not in earlier.epochs:  # metrics.csv starts at epoch 1: the base's row is in run.json
        _add_base_row(earlier, run_dir)
    for epoch in reversed(earlier.epochs):
        path = previews_path(run_dir, epoch)
        if path.is_file():  # (epoch 0's: the base model's predictions)
            try:
                earlier.previews, earlier.preview_epoch = read_previews(path), epoch
            except (OSError, ValueError, KeyError):
                continue  # an unreadable file: the one before
            break
    return earlier


def _add_base_row(earlier: EarlierEpochs, run_dir: str) -> None:
    from loragui.engine.runrecord import read_run_record
    from loragui.engine.runs import as_float

    try:
        record = read_run_record(run_dir)
    except (OSError, ValueError):
        return
    if not isinstance(record, dict) or as_float(record.get("base_dice")) is None:
        return
    final = record.get("final") if isinstance(record.get("final"), dict) else {}
    val_loss = as_float(final.get("val_loss")) if final.get("epoch") == 0 else None
    for name, value in (("epochs", 0), ("steps", 0), ("val_loss", val_loss),
                        ("dice", as_float(record["base_dice"])), ("train_loss", None)):
        getattr(earlier, name).insert(0, value)


def put_earlier(event: Any, config: Any, events: queue.SimpleQueue) -> None:
    """After a resumed run's ``RunStarted``, its past on the queue (never raises: a
    run whose past cannot be read goes on with empty curves)."""
    from loragui.engine.events import RunStarted

    if not (isinstance(event, RunStarted) and config.resume and config.out):
        return
    try:
        events.put(read_earlier(config.out))
    except Exception:  # noqa: BLE001 - the curves are a view; the training matters
        pass


def show_earlier(view, earlier: EarlierEpochs, epochs: int) -> None:
    """Draw the earlier epochs in ``view`` (a TrainingView just reset by RunStarted):
    validation by epoch, the training loss at each epoch's end, the base model's
    line (epoch 0) and the newest previews."""
    best_epoch, best_dice = earlier.best()
    curves = view.curves
    ends = [(s, t) for s, t in zip(earlier.steps, earlier.train_loss, strict=True)
            if s and t is not None]  # the training loss at each epoch's end
    curves.add_steps([s for s, _ in ends], [t for _, t in ends])
    for i, epoch in enumerate(earlier.epochs):
        curves.add_epoch(epoch, earlier.steps[i], earlier.val_loss[i], earlier.dice[i],
                         earlier.train_loss[i], best_epoch, best_dice)
    if earlier.previews:
        view.previews.show_previews(earlier.previews, earlier.preview_epoch, epochs)
