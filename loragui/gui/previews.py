"""The predictions panel: the same few validation images every epoch, with the
ground truth outlined in green and the current prediction tinted magenta.

Built from the numpy arrays in ``EpochEvent.previews`` (never live tensors).
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .overlay import GT_COLOUR, PRED_COLOUR, dice, overlay

pg.setConfigOptions(imageAxisOrder="row-major")

MAX_COLUMNS = 4


def _hex(colour: np.ndarray) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in colour)


class PredictionPreviews(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.epoch: int | None = None
        self.names: list[str] = []
        self.images: list[np.ndarray] = []  # the overlays last shown (for tests)
        self._items: list[tuple[pg.LabelItem, pg.ViewBox, pg.ImageItem]] = []

        self.title = QLabel("Predictions on validation images appear after the first validation.")
        self.title.setWordWrap(True)
        self.legend = QLabel(
            f"<span style='color:{_hex(GT_COLOUR)}'>▬</span> ground truth outline &nbsp; "
            f"<span style='color:{_hex(PRED_COLOUR)}'>■</span> prediction")
        self.legend.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.view = pg.GraphicsLayoutWidget()
        self.view.ci.setContentsMargins(2, 2, 2, 2)
        self.view.ci.setSpacing(4)

        header = QWidget()
        row = QHBoxLayout(header)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.title, 1)
        row.addWidget(self.legend)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(header)
        layout.addWidget(self.view, 1)
        self.apply_palette()

    def apply_palette(self) -> None:
        self.view.setBackground(self.palette().color(QPalette.ColorRole.Window))
        text = self.palette().color(QPalette.ColorRole.WindowText)
        for label, _, _ in self._items:
            label.setAttr("color", text)
            label.setText(label.text, color=text)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self.apply_palette()
        super().changeEvent(event)

    def clear(self) -> None:
        """Empty the cells (kept for the next run: making them costs ~30 ms)."""
        for label, _, image in self._items:
            label.setText("")
            image.clear()
        self.names, self.images, self.epoch = [], [], None
        self.title.setText("Predictions on validation images appear after the first validation.")

    def prepare(self, n: int) -> None:
        """Make the cells for ``n`` previews before the first epoch arrives."""
        if n > 0:
            self._ensure_cells(n)

    def _ensure_cells(self, n: int) -> None:
        if len(self._items) == n:
            return
        self.view.ci.clear()
        self._items.clear()
        columns = min(n, MAX_COLUMNS)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        for i in range(n):
            r, c = divmod(i, columns)
            label = self.view.ci.addLabel("", row=2 * r, col=c, color=text, size="9pt")
            self.view.ci.layout.setRowFixedHeight(2 * r, 1.6 * self.fontMetrics().height())
            box = self.view.ci.addViewBox(row=2 * r + 1, col=c, lockAspect=True,
                                          invertY=True, enableMenu=False)
            box.setMouseEnabled(False, False)
            image = pg.ImageItem()
            box.addItem(image)
            self._items.append((label, box, image))

    def show_previews(self, previews: list, epoch: int, epochs: int | None = None,
                      overlays: list | None = None) -> None:
        """Draw one ``Preview`` per cell; cells are made on first use and then reused.

        ``overlays`` ([(rgb, dice), ...]) may come ready-made from the worker thread."""
        if not previews:
            return
        self._ensure_cells(len(previews))
        self.epoch = epoch
        self.names, self.images = [], []
        text = self.palette().color(QPalette.ColorRole.WindowText)
        drawn = overlays or [(None, None)] * len(previews)
        for (label, box, item), p, (rgb, score) in zip(self._items, previews, drawn, strict=False):
            if rgb is None:
                rgb, score = overlay(p.image, p.mask, p.prediction), dice(p.mask, p.prediction)
            resized = item.image is None or item.image.shape != rgb.shape
            item.setImage(rgb, autoLevels=False, levels=(0, 255))
            if resized:
                box.autoRange(padding=0)
            name = p.name if len(p.name) <= 22 else p.name[:9] + "…" + p.name[-9:]
            caption = html.escape(name) + (f" · Dice {score:.2f}" if score is not None else "")
            label.setText(caption, color=text)
            self.names.append(p.name)
            self.images.append(rgb)
        when = "base model, before training" if epoch == 0 else (
            f"after epoch {epoch}" + (f" of {epochs}" if epochs else ""))
        self.title.setText(f"<b>Predictions</b> on validation images ({when})")
