"""The window's side of the Runs view: what opening, exporting, resuming and training
a run again do, with the window's own pieces (the results panel and the export dialog
of :class:`~loragui.gui.outputs.AfterTraining`, :class:`~loragui.gui.resume.ResumeOffer`,
the settings panel, the training view)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject

from loragui.engine.runs import RunRow

from .runs import RunsView
from .workers import CallWorker, Worker

if TYPE_CHECKING:
    from loragui.engine.runcompare import Curves


def review_material(row: RunRow) -> tuple[Curves, list, int]:
    """(curves, previews, epoch) of a run for the training view, in a worker thread:
    the curves from the base model's epoch 0 on, the previews of its best epoch, else of
    its last one that has some ([] if none)."""
    from loragui.engine.events import previews_path, read_previews
    from loragui.engine.runcompare import read_curves

    curves = read_curves(row.path, base=True)
    for epoch in dict.fromkeys([row.best_epoch or 0, *reversed(curves.epochs)]):
        path = previews_path(row.path, int(epoch))
        if epoch and path.is_file():
            try:
                return curves, read_previews(path), int(epoch)
            except (OSError, ValueError, KeyError):
                continue
    return curves, [], 0


class RunsHistory(QObject):
    """The window's side of the Runs view: what each request does with the window's
    own pieces. ``outputs`` is AfterTraining, ``resume_offer`` ResumeOffer,
    ``settings`` the SettingsPanel; ``load_folders(images, masks)``; ``training()``;
    ``changed()`` after a run is opened (the export actions follow); ``training_view()``
    makes (or gives) the curves and previews, ``show_training_view()`` shows them;
    ``track(worker)`` hands each job to the window, which waits for it on closing."""

    def __init__(self, view: RunsView, *, outputs, results, resume_offer, settings,
                 load_folders: Callable[[Path, Path], None], training: Callable[[], bool],
                 overrides: dict[str, Any], log: Callable[..., None],
                 changed: Callable[[], None], training_view: Callable[[], Any],
                 show_training_view: Callable[[], None],
                 track: Callable[[Worker], None]) -> None:
        super().__init__(view)
        self._training_view, self._show_training_view = training_view, show_training_view
        self._track = track
        self.view, self.outputs, self.results = view, outputs, results
        self.resume_offer, self.settings = resume_offer, settings
        self._load_folders, self._training, self._overrides = load_folders, training, overrides
        self._log, self._changed = log, changed
        self._carried: list[str] = []  # the overrides the last "train again" put in
        view.reviewRequested.connect(self.review)
        view.exportRequested.connect(self.export)
        view.resumeRequested.connect(self.resume)
        view.trainAgainRequested.connect(self.train_again)

    def review(self, row: RunRow) -> bool:
        """Show the run's result (and make it what Export and Predict work on)."""
        if self._training() or not row.config:
            return False
        from loragui.engine.config import TrainConfig
        from loragui.engine.events import RunFinished

        result = RunFinished(run_dir=row.path, output=row.output, best_epoch=row.best_epoch or 0,
                             best_dice=row.best_dice, base_dice=row.base_dice,
                             steps=row.steps or 0, seconds=row.seconds or 0.0,
                             stopped=row.status != "finished")
        self.outputs.set_run(result, TrainConfig.from_dict(row.config))
        self.results.show_result(result)
        self.outputs.check_adapter()
        self._log(f"Opened the run {row.name} ({row.path})")
        self._changed()
        worker = CallWorker(review_material, row)
        worker.succeeded.connect(lambda material: self._show_run(row, *material))
        worker.failed.connect(lambda m, d: self._log(f"Could not read the run's curves: {m}",
                                                     "warning"))
        self._track(worker)
        worker.start()
        return True

    def _show_run(self, row: RunRow, curves: Curves, previews: list, epoch: int) -> None:
        """The run's curves by epoch (each class's too, in its colour) and its best
        epoch's predictions, in the training view."""
        if self._training():
            return
        view = self._training_view()
        view.reset()
        epochs = int(max(curves.epochs, default=0))
        view.curves.reset(total_steps=row.total_steps or 0, epochs=epochs)
        view.curves.add_history(curves, row.best_epoch, row.best_dice)
        view.curves.redraw()
        if previews:
            view.previews.show_previews(previews, epoch, epochs)
        self._show_training_view()

    def export(self, row: RunRow, merged: bool) -> None:
        if self.review(row):
            if merged:
                self.outputs.export_merged_dialog()
            else:
                self.outputs.export_adapter_dialog()

    def resume(self, row: RunRow) -> None:
        if not self._training():
            self.resume_offer.check(row.path, ask=True)

    def train_again(self, row: RunRow) -> None:
        """The run's settings into the settings panel, its data folders where they still
        exist; settings the panel does not show are kept for the next run."""
        if self._training() or not row.config:
            return
        from loragui.engine.runs import train_again_config

        config = train_again_config(row)
        values = config.to_dict()
        base = row.config.get("base")
        if base and not Path(base).is_file():
            self._log(f"The base model of that run ({base}) no longer exists: choose it again "
                      "in the settings, or the base model chosen there is used.", "warning")
        if config.devices:
            values["device"] = config.devices
        self.settings.set_values(values)
        shown = set(self.settings.values())
        hidden = {k: v for k, v in row.changed.items() if k not in shown | {"devices"}}
        for key in self._carried:
            self._overrides.pop(key, None)
        self._overrides.update(hidden)
        self._carried = list(hidden)
        note = f"; also kept for the next run: {', '.join(f'{k}={v}' for k, v in hidden.items())}" \
            if hidden else ""
        self._log(f"The settings of the run {row.name} are filled in{note}.")
        if config.images and config.masks:
            self._load_folders(Path(config.images), Path(config.masks))
        else:
            missing = [p for p in (row.config.get("images"), row.config.get("masks")) if p]
            self._log("The data folders of that run no longer exist"
                      + (f" ({', '.join(missing)})" if missing else "")
                      + ": add the images and masks to train on.", "warning")
