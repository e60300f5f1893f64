"""A training run seen from the window: the worker, the event queue and the
timer that drains it, plus the view with the curves and the predictions.

The training itself runs in a child process (``child.py``: ``loragui train
--events jsonl``), so its Python work never holds this process's GIL; a thread
reads the child's JSON lines back into engine events. (Tests may inject a
``run_training`` generator instead: it then runs in a thread of this process.)
The worker puts every engine event on a queue; a ``QTimer`` on the GUI thread
drains it five times a second, folds all the steps it finds into the
curve buffers, draws only the newest previews, and redraws once. However fast
the engine runs, the event loop gets the same small amount of work.
"""

from __future__ import annotations

import queue
import sys
import time
from collections.abc import Callable, Iterator

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from loragui.engine.events import (
    EpochEvent,
    LogEvent,
    RunFailed,
    RunFinished,
    RunStarted,
    StepEvent,
)

from .child import ProcessTrainWorker
from .history import EarlierEpochs, show_earlier
from .overlay import EpochWithOverlays
from .plots import TrainingCurves
from .previews import PredictionPreviews
from .workers import TrainWorker

DRAIN_INTERVAL_MS = 200
# New steps reach the curves and the progress bar once a second (an epoch's results at
# once, within DRAIN_INTERVAL_MS): each redraw costs the GUI thread 5-20 ms of painting,
# CPU time that a training on the same cores would otherwise get. On a CPU the cost is
# doubled: while the window runs, one of the training's threads waits for it and the
# other waits for that one at the end of each parallel operation.
REDRAW_INTERVAL_S = 1.0
PREVIEWS_DELAY_MS = 40
SWITCH_INTERVAL_S = 0.001


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "…"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class TrainingView(QWidget):
    """Curves above, predictions below, in a splitter."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.curves = TrainingCurves()
        self.previews = PredictionPreviews()
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.curves)
        self.splitter.addWidget(self.previews)
        # Small enough for a 1024x640 screen, or 1600x1000 at scale 2 (800x500); the
        # previews' minimum is their rows' (PredictionPreviews).
        self.curves.setMinimumHeight(110)
        self.splitter.setStretchFactor(0, 5)
        self.splitter.setStretchFactor(1, 4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

    def reset(self) -> None:
        self.curves.reset()
        self.previews.clear()


class TrainingRun(QObject):
    """One training run: start, stop, and the drained events turned into signals.

    Signals (all on the GUI thread): ``started(RunStarted)``, ``progress(step, total,
    text)``, ``logged(message, level)``, ``epochDone(EpochEvent)``, and ``ended(event)``
    with the final ``RunFinished`` or ``RunFailed`` once the thread has finished.
    """

    started = Signal(object)
    progress = Signal(int, int, str)
    logged = Signal(str, str)
    epochDone = Signal(object)
    ended = Signal(object)

    def __init__(self, view: TrainingView, config,
                 run_training: Callable[..., Iterator] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.view = view
        self.config = config
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.in_process = run_training is not None
        if self.in_process:
            self.worker = TrainWorker(config, self.events, run_training, parent=self)
        else:
            self.worker = ProcessTrainWorker(config, self.events, parent=self)
        self.worker.finished.connect(self._thread_finished)
        self.timer = QTimer(self)
        self.timer.setInterval(DRAIN_INTERVAL_MS)
        self.timer.timeout.connect(self.drain)
        self.info: RunStarted | None = None
        self.last_epoch: EpochEvent | None = None
        self.best_epoch: EpochEvent | None = None  # the validation of the adapter kept
        self.result: RunFinished | RunFailed | None = None
        self._active = False
        self._switch_interval = sys.getswitchinterval()
        self.drained = 0  # events handled (for tests and the measurements)
        self.drains = 0
        self._drawn_at = 0.0  # time.monotonic() of the last redraw of curves and progress
        self._pending_step: StepEvent | None = None  # newest step not yet shown
        self._previews: EpochEvent | None = None  # newest previews not yet shown

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        self.view.reset()
        self.view.previews.prepare(self.config.previews)
        self.timer.start()
        self._active = True
        self._switch_interval = sys.getswitchinterval()
        if self.in_process:
            # Training in a thread of this process: hand the GIL to the GUI thread
            # sooner (pyqtgraph's paint calls into Python many times, and each call
            # may wait a whole switch interval for a busy worker, 5 ms by default).
            sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL_S))
        # Start the engine just after the view's first paint.
        QTimer.singleShot(50, self.worker.start)

    def stop(self) -> None:
        """Ask the engine to stop after the current step (it keeps the best adapter)."""
        self.worker.cancel()

    def abort(self) -> None:
        """Stop now, without waiting for the step (the child process is killed; the
        checkpoint of the last finished epoch is kept)."""
        if isinstance(self.worker, ProcessTrainWorker):
            self.worker.abort()
        else:
            self.worker.cancel()  # a thread cannot be killed: it stops after its step

    def is_running(self) -> bool:
        """True from start() until the worker thread has ended and its end been reported."""
        return self._active

    @property
    def stopping(self) -> bool:
        return self.worker.cancelled()

    def wait(self, ms: int | None = None) -> bool:
        return self.worker.wait() if ms is None else self.worker.wait(ms)

    # -- events ---------------------------------------------------------------------------
    def _thread_finished(self) -> None:
        self.timer.stop()
        sys.setswitchinterval(self._switch_interval)
        self.drain(final=True)  # the curves now, the last previews PREVIEWS_DELAY_MS later
        # The window's response to the end (results panel, buttons) in a pass of its own.
        QTimer.singleShot(2 * PREVIEWS_DELAY_MS, self._finish)

    def _finish(self) -> None:
        self._show_previews()  # any still waiting for their moment
        self._active = False
        if self.result is None:  # cannot happen: the worker always ends with one
            self.result = RunFailed("Training ended without reporting a result.")
        self.ended.emit(self.result)

    def drain(self, final: bool = False) -> None:
        """Handle every queued event; redraw once (for steps alone, at most every
        ``REDRAW_INTERVAL_S``)."""
        batch = []
        while True:
            try:
                batch.append(self.events.get_nowait())
            except queue.Empty:
                break
        if not batch:
            self._redraw(final)  # what the last drain held back
            return
        self.drains += 1
        self.drained += len(batch)
        curves = self.view.curves
        steps: list[int] = []
        losses: list[float] = []
        last_step: StepEvent | None = None
        newest_previews: EpochEvent | None = None
        for event in batch:
            if isinstance(event, StepEvent):
                steps.append(event.step)
                losses.append(event.loss)
                last_step = event
            elif isinstance(event, EpochEvent):
                curves.add_steps(steps, losses)  # keep the order of steps and epochs
                steps, losses = [], []
                curves.add_epoch(event.epoch, event.step, event.val_loss, event.dice,
                                 event.train_loss, event.best_epoch, event.best_dice)
                if event.classes:
                    curves.add_classes(event.epoch, event.classes)
                if event.previews:
                    newest_previews = event
                self.last_epoch = event
                if event.is_best:
                    self.best_epoch = event
                self.logged.emit(self._epoch_line(event), "info")
                self.epochDone.emit(event)
            elif isinstance(event, RunStarted):
                self.info = event
                curves.reset(event.total_steps, event.epochs)
                curves.set_class_colours(self.class_colours())
                self.logged.emit(self._started_line(event), "info")
                self.started.emit(event)
                self.progress.emit(event.start_step, event.total_steps,
                                   "Checking the base model on the validation images…")
            elif isinstance(event, EarlierEpochs):  # a resumed run's past, after RunStarted
                curves.add_steps(steps, losses)
                steps, losses = [], []
                show_earlier(self.view, event, self.info.epochs if self.info else 0)
            elif isinstance(event, LogEvent):
                self.logged.emit(event.message, event.level)
            elif isinstance(event, RunFinished | RunFailed):
                self.result = event
        curves.add_steps(steps, losses)
        if last_step is not None:
            self._pending_step = last_step
        self._redraw(final or any(isinstance(e, EpochEvent) for e in batch))
        if newest_previews is not None:
            # Drawn a moment later, not in the same event-loop pass as the curves: two
            # shorter pauses of the GUI thread instead of one long one.
            self._previews = newest_previews
            QTimer.singleShot(PREVIEWS_DELAY_MS, self._show_previews)

    def _show_previews(self) -> None:
        event, self._previews = self._previews, None
        if event is not None:
            drawn = event.overlays if isinstance(event, EpochWithOverlays) else None
            self.view.previews.show_previews(event.previews, event.epoch, event.epochs, drawn)

    def _redraw(self, now: bool = False) -> None:
        """The curves and the progress bar, if due (or ``now``)."""
        t = time.monotonic()
        if not now and t - self._drawn_at < REDRAW_INTERVAL_S:
            return
        self._drawn_at = t
        self.view.curves.redraw()  # (nothing to do without new data)
        step, self._pending_step = self._pending_step, None
        if step is not None and self.result is None:
            self.progress.emit(step.step, step.total_steps, self._step_text(step))

    def class_colours(self) -> list[str] | None:
        """The run's class colours (index = class) as its RunStarted gave them; None for
        foreground/background or before the run has started."""
        from loragui.engine.maskkinds import MaskMeaning

        if self.info is None or not self.info.masks:
            return None
        try:
            return MaskMeaning.from_dict(self.info.masks).colours
        except ValueError:  # written by another version: the default palette then
            return None

    # -- text ---------------------------------------------------------------------------------
    def _step_text(self, e: StepEvent) -> str:
        epochs = self.info.epochs if self.info else 0
        text = f"Epoch {e.epoch}/{epochs} · step {e.step}/{e.total_steps}"
        text += f" · {e.images_per_s:.1f} images/s · {format_duration(e.eta_s)} left"
        if self.stopping:
            text = "Stopping after this step… " + text
        return text

    @staticmethod
    def _started_line(e: RunStarted) -> str:
        share = 100.0 * e.trainable_params / max(e.total_params, 1)
        what = "LoRA adapter" if e.mode == "lora" else "full model"
        resumed = f", resuming at step {e.start_step}" if e.start_step else ""
        return (f"Training a {what} on {e.device}: {e.n_train} training / {e.n_val} validation "
                f"images, {e.epochs} epochs of {e.steps_per_epoch} steps{resumed}; "
                f"{e.trainable_params:,} of {e.total_params:,} parameters trainable "
                f"({share:.1f} %). Run folder: {e.run_dir}")

    @staticmethod
    def _epoch_line(e: EpochEvent) -> str:
        def num(v: float | None, digits: int = 3) -> str:
            return "–" if v is None else f"{v:.{digits}f}"

        if e.epoch == 0:
            return (f"Base model before training: validation loss {num(e.val_loss, 4)}, "
                    f"Dice {num(e.dice)}")
        best = "  ★ best so far" if e.is_best else ""
        # (e.seconds is the validation's time, not the epoch's)
        return (f"Epoch {e.epoch}/{e.epochs}: training loss {num(e.train_loss, 4)}, validation "
                f"loss {num(e.val_loss, 4)}, Dice {num(e.dice)}, IoU {num(e.iou)} at "
                f"{format_duration(e.elapsed)}, validated in {format_duration(e.seconds)}{best}")
