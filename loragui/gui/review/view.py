"""The review view: every image in a list (split, Dice, edited; :mod:`.imagelist`), the
large canvas beside it, overlay controls and editing tools (:mod:`.controls`), and where
the corrections go.

Keys (shown in each tool's tooltip): Page Down or "." next image, Page Up or ","
previous (Up/Down move in the list when it has the focus); H pan, B brush, E eraser,
F fill, D delete object, A accept the prediction, [ and ] brush size, Ctrl+Z undo,
Ctrl+Shift+Z redo, Ctrl+0 fit, Ctrl+1 actual pixels, Ctrl+S save the corrections.
Nothing slow runs here: listing, decoding and predicting happen in worker threads
(:mod:`.predictions`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..workers import CallWorker, Worker
from .canvas import MaskCanvas
from .controls import CanvasControls, key_action
from .editing import EditSession
from .imagelist import ImageList
from .items import ReviewItem, list_items
from .predictions import Predictions, dice

CANVAS_SHARE = 0.7  # of the view's width the canvas takes when it opens


def ask_unsaved(parent: QWidget, count: int, doing: str) -> str:
    """"save", "discard" or "cancel": what to do with ``count`` unsaved corrected masks
    before ``doing`` ("closing the review", "training"...)."""
    box = QMessageBox(QMessageBox.Icon.Question, "Unsaved corrections",
                      f"{count} corrected mask{'s are' if count != 1 else ' is'} not saved yet. "
                      f"Save before {doing}?", parent=parent)
    box.setStandardButtons(QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                           | QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Save)
    answer = box.exec()
    return {QMessageBox.StandardButton.Save: "save",
            QMessageBox.StandardButton.Discard: "discard"}.get(answer, "cancel")


class ReviewView(QWidget):
    """``open()`` a folder with a model; ``trainAgain()`` when the user asks for a run
    from the reviewed adapter on the corrected masks; ``logged(message, level)``."""

    trainAgain = Signal()
    logged = Signal(str, str)
    opened = Signal()  # the list is filled

    def __init__(self, track: Callable[[Worker], None] | None = None, parent=None) -> None:
        super().__init__(parent)
        self._track = track
        self.images_dir: Path | None = None
        self.masks_dir: Path | None = None
        self.corrections_dir: Path | None = None
        self.current: str | None = None
        self._listing: CallWorker | None = None
        self.session: EditSession | None = None
        self.canvas: MaskCanvas | None = None
        self.meaning = None  # the model's MaskMeaning when it has several classes
        self.predictions = Predictions()
        self.predictions.pictureReady.connect(self._picture_ready)
        self.predictions.predicted.connect(self._predicted)
        self.predictions.failed.connect(
            lambda stem, m, d: self.logged.emit(f"{stem}: {m}", "error"))
        self._workers: set[Worker] = set()
        self._sized = False
        self._build()
        self._new_session()

    # -- building --------------------------------------------------------------------
    def _build(self) -> None:
        self.images = ImageList(self, lambda: self.current)
        self.images.chosen.connect(self.show_stem)
        self.controls = CanvasControls(self)

        self.folder_label = QLabel()
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A long path never pushes the buttons out of the window.
        self.folder_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.change_folder = QPushButton("Change…")
        self.change_folder.setToolTip("Choose the folder the corrected masks are saved to")
        self.change_folder.clicked.connect(self.choose_corrections_dir)
        self.save_button = QPushButton("Save corrections")
        self.save_button.setToolTip("Save the corrected masks (Ctrl+S)")
        self.save_button.clicked.connect(self.save)
        key_action(self, "Save", "Ctrl+S", self.save, "save the corrected masks")
        self.train_button = QPushButton("Train again")
        self.train_button.setToolTip("Continue training from this adapter on the corrected masks")
        self.train_button.clicked.connect(self.trainAgain.emit)
        saving = QHBoxLayout()
        saving.addWidget(QLabel("Corrections:"))
        saving.addWidget(self.folder_label, 1)
        for button in (self.change_folder, self.save_button, self.train_button):
            saving.addWidget(button)

        right = QWidget()
        canvas_column = QVBoxLayout(right)
        canvas_column.setContentsMargins(0, 0, 0, 0)
        canvas_column.addWidget(self.controls)
        self.canvas_column = canvas_column
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.images)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(saving)

    def _new_session(self) -> None:
        """A fresh editing session, and a canvas drawing it in the place of the last one."""
        self.session = EditSession()
        if self.meaning is not None:  # the brush paints classes, saved as their ids
            self.session.edits_classes(self.meaning)
        self.session.on_change.append(self._mask_changed)
        canvas = MaskCanvas(self.session)
        if self.canvas is not None:
            self.canvas_column.replaceWidget(self.canvas, canvas)
            self.canvas.deleteLater()
        else:
            self.canvas_column.addWidget(canvas, 1)
        self.canvas = canvas
        self.controls.attach(canvas)
        canvas.set_class_colours(self.meaning.colours if self.meaning is not None else None)
        self._update_buttons()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if not self._sized and self.isVisible():  # the first real size: share it out once
            self._sized = True
            total = self.splitter.width()
            self.splitter.setSizes([int(total * (1 - CANVAS_SHARE)), int(total * CANVAS_SHARE)])

    # -- opening ---------------------------------------------------------------------
    def open(self, images_dir: Path, masks_dir: Path | None, *, base: str | None,
             adapter: str | None, device: str = "auto", validation=None,
             corrections_dir: Path | None = None) -> CallWorker:
        """Review ``images_dir`` (with ``masks_dir``'s masks, if any) with a model: the
        base alone (``adapter`` None) or with an adapter. Lists the folders in a worker."""
        from loragui.engine.corrections import default_corrections_dir

        self.images_dir = Path(images_dir)
        self.masks_dir = Path(masks_dir) if masks_dir else None
        self.corrections_dir = Path(corrections_dir) if corrections_dir else \
            default_corrections_dir(self.masks_dir, self.images_dir)
        self._show_corrections_dir()
        if self.session.edited() or self.canvas.current_stem() is not None:
            self._new_session()
        self.current = None
        self.predictions.set_model(base, adapter, device)
        self.controls.status.setText("Listing the images…")
        worker = CallWorker(list_items, self.images_dir, self.masks_dir,
                            corrections_dir=self.corrections_dir, validation=validation)
        worker.succeeded.connect(lambda listing: self._listed(worker, listing))
        worker.failed.connect(lambda m, d: worker is self._listing and self.logged.emit(m, "error"))
        self._listing = worker
        self._own(worker)
        worker.start()
        return worker

    def set_model(self, base: str | None, adapter: str | None, device: str = "auto") -> None:
        """Predict with another model: every Dice and prediction is computed again."""
        if self.predictions.set_model(base, adapter, device):
            for item in self.images.table.items:
                item.dice = None
                self.images.table.changed(item.stem)
            self.canvas.set_prediction(None)
            if self.current is not None:
                self.predictions.focus(self.current, self.images.visible_order())
            self.images.update_counts()

    def _listed(self, worker: CallWorker, listing) -> None:
        if worker is not self._listing:
            return
        self._listing = None
        for note in listing.notes:
            self.logged.emit(note, "warning")
        self.predictions.set_items(listing.items)
        self.controls.status.setText("")
        self.images.set_items(listing.items)
        self.opened.emit()

    # -- showing ---------------------------------------------------------------------
    def show_stem(self, stem: str) -> None:
        self.current = stem
        self.predictions.focus(stem, self.images.visible_order())
        self._display(stem)

    def _display(self, stem: str) -> None:
        picture = self.predictions.picture(stem)
        if picture is None:
            self.controls.status.setText(f"Loading {self.images.table.item(stem).image.name}…")
            return
        prediction = self.predictions.prediction(stem)
        if prediction is not None:
            self.set_meaning(prediction.meaning)
        if self.session.meaning is not None:  # class maps: the mask is its classes
            classes = self._mask_classes(picture)
            mask = classes if classes is not None or picture.mask is None else \
                picture.mask.astype(np.uint8)  # (one class: class 1)
            self.canvas.show_image(stem, picture.image, mask)
        else:
            self.canvas.show_image(stem, picture.image, picture.mask, self._mask_classes(picture))
        if self.canvas.zoom() == 1.0:
            self.canvas.fit_to_window()
        self._show_prediction(prediction)
        self.controls.status.setText("" if prediction is not None else "Predicting…")

    def _show_prediction(self, prediction) -> None:
        if prediction is None:
            self.canvas.set_prediction(None)
        else:
            self.canvas.set_prediction(prediction.mask(), prediction.classes)

    def _mask_classes(self, picture) -> np.ndarray | None:
        """The class of each pixel of the picture's mask, where the model has several
        classes and the mask holds their ids; None otherwise (or for a mask holding an
        id no class has: it shows in one colour, as a foreground/background one)."""
        if picture.ids is None or self.meaning is None:
            return None
        from loragui.engine.errors import DataError

        try:
            return self.meaning.target(picture.ids, "the mask")
        except DataError:
            return None

    def set_meaning(self, meaning) -> None:
        """The model's classes (a MaskMeaning of several, or None): the overlays colour
        each class and the controls name them."""
        if meaning == self.meaning:
            return
        self.meaning = meaning if meaning is not None and meaning.k > 1 else None
        self.canvas.set_class_colours(self.meaning.colours if self.meaning else None)
        self.controls.set_classes(self.meaning)
        if (self.session.meaning is None) != (self.meaning is None) \
                and not self.session.edited():
            # Masks of the model's kind from now on (class maps, or foreground/background).
            self._new_session()
            if self.current is not None:
                self._display(self.current)
        if self.meaning is None:
            return
        stem = self.canvas.current_stem()
        picture = self.predictions.picture(stem) if stem else None
        if picture is not None:
            self.canvas.set_mask_classes(self._mask_classes(picture))

    def _picture_ready(self, stem: str) -> None:
        if stem == self.current and self.canvas.current_stem() != stem:
            self._display(stem)

    def _predicted(self, stem: str) -> None:
        item = self.images.table.item(stem)
        if item is None:
            return
        self._rescore(item)
        if stem == self.current and self.canvas.current_stem() == stem:
            prediction = self.predictions.prediction(stem)
            self.set_meaning(prediction.meaning)
            self._show_prediction(prediction)
            self.controls.status.setText("")
        self.images.scores_changed()

    def _rescore(self, item: ReviewItem) -> None:
        prediction = self.predictions.prediction(item.stem)
        if prediction is None:
            return
        edited = self.session.current(item.stem) if item.stem in self.session.edited() else None
        item.dice = dice(prediction.mask(), edited) if edited is not None else prediction.dice
        self.images.table.changed(item.stem)

    def _mask_changed(self, stem: str) -> None:
        item = self.images.table.item(stem)
        if item is not None:
            item.edited = stem in self.session.edited()
            self._rescore(item)
            self.images.table.changed(stem)
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.controls.undo_action.setEnabled(self.session.can_undo())
        self.controls.redo_action.setEnabled(self.session.can_redo())
        unsaved = len(self.session.unsaved())
        self.save_button.setEnabled(bool(unsaved))
        self.save_button.setText(f"Save corrections ({unsaved})" if unsaved else "Save corrections")

    # -- saving ----------------------------------------------------------------------
    def _show_corrections_dir(self) -> None:
        self.folder_label.setText(str(self.corrections_dir or ""))
        self.folder_label.setToolTip("Corrected masks are saved here; the original masks "
                                     "are never changed")

    def choose_corrections_dir(self) -> None:
        start = str(self.corrections_dir.parent if self.corrections_dir else Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Folder for the corrected masks", start)
        if folder:
            self.corrections_dir = Path(folder)
            self._show_corrections_dir()

    def save(self) -> list[Path]:
        """Save the unsaved corrected masks into the corrections folder."""
        from loragui.engine.errors import LoraGuiError

        from .. import dialogs

        if not self.session.unsaved() or self.corrections_dir is None:
            return []
        try:
            written = self.session.save(self.corrections_dir, masks_dir=self.masks_dir)
        except LoraGuiError as exc:
            dialogs.show_error(self, str(exc), title="Cannot save the corrections")
            return []
        for path in written:
            item = self.images.table.item(path.stem)
            if item is not None:
                item.mask, item.corrected = path, True
                self.images.table.changed(item.stem)
        n = len(written)
        self.logged.emit(f"{n} corrected mask{'s' if n != 1 else ''} saved to "
                         f"{self.corrections_dir}", "info")
        self._update_buttons()
        return written

    def may_leave(self, doing: str) -> bool:
        """Whether the edits allow ``doing`` now (asks to save unsaved ones)."""
        unsaved = self.session.unsaved()
        if not unsaved:
            return True
        answer = ask_unsaved(self, len(unsaved), doing)
        if answer == "save":
            return bool(self.save()) or not self.session.unsaved()
        return answer == "discard"

    def has_corrections(self) -> bool:
        return self.corrections_dir is not None and any(
            i.corrected for i in self.images.table.items)

    # -- threads ---------------------------------------------------------------------
    def _own(self, worker: Worker) -> None:
        self._workers.add(worker)
        worker.finished.connect(lambda: self._workers.discard(worker))
        if self._track is not None:
            self._track(worker)

    def shutdown(self) -> None:
        """Stop and wait for every thread of the view."""
        self.predictions.shutdown()
        for worker in list(self._workers):
            worker.cancel()
        for worker in list(self._workers):
            worker.wait()
