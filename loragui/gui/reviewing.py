"""The main window's review: a window of its own (:class:`~.review.view.ReviewView`)
for the last run's adapter, any adapter, or the base alone, on any image folder;
"Train again" from it starts a run in the main window, warm-started from the
reviewed adapter, on the corrected masks.

:class:`Reviewing` is owned by the main window and given what it works on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QFileDialog, QVBoxLayout, QWidget

from . import dialogs
from .review.view import ReviewView
from .workers import Worker

REVIEW_SIZE = (1280, 820)


class ReviewWindow(QWidget):
    """The review view in a top-level window; closing it asks about unsaved edits."""

    def __init__(self, view: ReviewView, parent: QWidget) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.view = view
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(view)

    def closeEvent(self, event) -> None:
        if not self.view.may_leave("closing the review"):
            event.ignore()
            return
        self.view.shutdown()
        event.accept()


def train_fields() -> set[str]:
    from dataclasses import fields

    from loragui.engine.config import TrainConfig

    return {f.name for f in fields(TrainConfig)}


def sample_corrections(folders: tuple[Path, Path | None]) -> Path | None:
    """Corrections of the bundled sample go with the user's data, not into the
    installation (None: the usual place beside the masks)."""
    from loragui.engine.resources import bundled_sample_dirs

    from .prefs import data_dir

    sample = bundled_sample_dirs()
    if sample is not None and Path(folders[0]) == Path(sample[0]):
        return data_dir() / "sample-corrections"
    return None


class Reviewing(QObject):
    """``window`` is the main window: its data panel, settings, last run (``outputs``),
    ``training()``, ``log`` and ``track``; ``start_run(config)`` starts a run."""

    def __init__(self, window, *, start_run: Callable[[Any], None],
                 track: Callable[[Worker], None]) -> None:
        super().__init__(window)
        self.w, self._start_run, self._track = window, start_run, track
        self.frame: ReviewWindow | None = None
        self.view: ReviewView | None = None
        self.model: dict[str, Any] = {}  # base, adapter, device of the review
        self.folders: tuple[Path, Path | None] | None = None
        self.run_started: Any = None  # the config of the run "Train again" started

    # -- what to review --------------------------------------------------------------
    def review_current(self) -> None:
        """The Data panel's folders (masks optional) with the last run's adapter, or the
        chosen base alone."""
        folders = self._folders()
        if folders is not None:
            self.open(*folders, **self.current_model(folders[0]))

    def review_with_adapter(self) -> None:
        """The Data panel's folders with an adapter the user picks."""
        adapter = QFileDialog.getExistingDirectory(self.w, "Adapter folder to review with",
                                                   self.w.prefs.browse_dir)
        folders = self._folders() if adapter else None
        if folders is not None:
            self.open(*folders, **self.current_model(None) | {"adapter": adapter, "validation": None})

    def _folders(self) -> tuple[Path, Path | None] | None:
        """The Data panel's images and masks (None: none yet); without images, a folder
        of images the user picks."""
        if self.w.data.images_dir is not None:
            return self.w.data.images_dir, self.w.data.masks_dir
        folder = QFileDialog.getExistingDirectory(self.w, "Folder of images to review",
                                                  self.w.prefs.browse_dir)
        return (Path(folder), None) if folder else None

    def review_predicted(self, images: Path) -> None:
        """The images Predict folder just segmented, with the model that did it."""
        self.open(Path(images), None, **self.current_model(None))

    def current_model(self, images: Path | None) -> dict[str, Any]:
        """The last run's adapter (its validation stems when it trained on ``images``),
        else the base chosen in the settings alone."""
        from loragui.engine.runrecord import read_run_record

        output, config = self.w.outputs.output(), self.w.outputs.config
        values = self.w.settings.values()
        if not output or config is None:
            return {"base": values.get("base") or None, "adapter": None,
                    "device": values.get("device", "auto"), "validation": None}
        full = not Path(output).is_dir()  # a --full run wrote a model file
        validation = None
        result = self.w.outputs.result
        if images is not None and Path(config.images) == Path(images) and result.run_dir:
            try:
                validation = read_run_record(result.run_dir).get("validation")
            except (OSError, ValueError):
                validation = None
        return {"base": output if full else config.base, "adapter": None if full else output,
                "device": config.device, "validation": validation}

    def open(self, images: Path, masks: Path | None, *, base: str | None, adapter: str | None,
             device: str = "auto", validation=None) -> None:
        folders = (Path(images), Path(masks) if masks else None)
        if self.view is not None and self.frame.isVisible() and folders != self.folders \
                and not self.view.may_leave("opening other folders"):
            return
        if self.frame is None:
            self.view = ReviewView(track=self._track)
            self.view.logged.connect(self.w.log)
            self.view.trainAgain.connect(self.train_again)
            self.frame = ReviewWindow(self.view, self.w)
            self.frame.resize(*REVIEW_SIZE)
        self.folders = folders
        self.model = {"base": base, "adapter": adapter, "device": device}
        self.view.open(*folders, base=base, adapter=adapter, device=device,
                       validation=validation, corrections_dir=sample_corrections(folders))
        name = adapter or base or "the bundled base model"
        self.frame.setWindowTitle(f"Review {Path(images).name} with {Path(name).name} — loragui")
        self.w.log(f"Reviewing {images} with {name}")
        self.frame.show()
        self.frame.raise_()

    # -- train again -----------------------------------------------------------------
    def train_again(self) -> None:
        """A run from the reviewed adapter on the corrected masks (saved first)."""
        from .prefs import new_run_dir

        view = self.view
        if self.w.training():
            dialogs.show_error(self.frame, "A run is under way: wait for it to end, then train "
                               "again.", title="Train again")
            return
        if not view.may_leave("training"):
            return
        images, masks = self.folders
        corrections = view.corrections_dir if view.has_corrections() else None
        if masks is None and corrections is None:
            dialogs.show_error(self.frame, "None of these images has a mask yet: correct a few "
                               "(Accept prediction, brush) and save them, then train again.",
                               title="Train again")
            return
        known = train_fields()
        extra: dict[str, Any] = {"out": str(new_run_dir()), "base": self.model["base"]}
        if masks is None:  # only corrected masks: they are the masks folder
            masks, corrections = corrections, None
        else:
            extra["invert_masks"] = self.w.data.invert_masks.isChecked()
        if corrections is not None:
            if "corrections" not in known:
                dialogs.show_error(self.frame, "This version of loragui cannot train on "
                                   "corrected masks beside the original ones.", title="Train again")
                return
            extra["corrections"] = str(corrections)
        if self.model["adapter"] and "init_adapter" in known:
            extra["init_adapter"] = self.model["adapter"]
        elif self.model["adapter"]:
            self.w.log("This version of loragui cannot start from an adapter: the new run "
                       "starts from the base model.", "warning")
        extra |= self.w.config_overrides
        config = self.w.settings.make_config(images, masks, **extra)
        self.run_started = config
        self._start_run(config)
        self.w.raise_()
        self.w.activateWindow()

    def run_ended(self, result, config) -> None:
        """A run ended: one that "Train again" started has its adapter reviewed now, and
        the Runs view shows it beside the previous ones."""
        from loragui.engine.events import RunFinished

        if config is not self.run_started or self.view is None:
            return
        self.run_started = None
        if isinstance(result, RunFinished) and result.output and Path(result.output).is_dir():
            self.model["adapter"] = result.output
            self.view.set_model(self.model["base"], result.output, self.model["device"])
            self.w.log(f"Reviewing the new adapter {result.output}")
        self.w.runs_dock.show()
        self.w.runs_dock.raise_()

    # -- closing ---------------------------------------------------------------------
    def may_leave(self, doing: str) -> bool:
        """Whether the main window may go on ``doing`` (open other folders, train): unsaved
        edits of an open review are saved or discarded first, or the user cancels."""
        return self.view is None or not self.frame.isVisible() or self.view.may_leave(doing)

    def may_close(self) -> bool:
        """Whether the main window may close (unsaved edits are saved or discarded)."""
        if self.view is None or not self.frame.isVisible():
            return True
        if not self.view.may_leave("quitting"):
            return False
        self.frame.hide()
        return True

    def shutdown(self) -> None:
        if self.view is not None:
            self.view.shutdown()
