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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loragui.engine.runcompare import Curves


@dataclass
class EarlierEpochs:
    """What a run folder holds of the epochs before a resume: their curves (epoch 0,
    the base model's, first) and the newest previews."""

    curves: Curves
    previews: list = field(default_factory=list)  # of preview_epoch
    preview_epoch: int = 0


def read_earlier(run_dir: str) -> EarlierEpochs:
    """The epochs ``run_dir`` records, and the newest previews it saved (worker thread)."""
    from loragui.engine.events import previews_path, read_previews
    from loragui.engine.runcompare import read_curves

    earlier = EarlierEpochs(read_curves(run_dir, base=True))
    for epoch in reversed(earlier.curves.epochs):
        path = previews_path(run_dir, int(epoch))
        if path.is_file():  # (epoch 0's: the base model's predictions)
            try:
                earlier.previews, earlier.preview_epoch = read_previews(path), int(epoch)
            except (OSError, ValueError, KeyError):
                continue  # an unreadable file: the one before
            break
    return earlier


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
    validation by epoch (each class's too), the training loss at each epoch's end, the
    base model's line (epoch 0) and the newest previews."""
    past = earlier.curves
    ends = [(s, t) for s, t in zip(past.steps, past.train_loss, strict=True)
            if s and t is not None]  # the training loss at each epoch's end
    view.curves.add_steps([s for s, _ in ends], [t for _, t in ends])
    view.curves.add_history(past, *past.best())
    if earlier.previews:
        view.previews.show_previews(earlier.previews, earlier.preview_epoch, epochs)
