"""The predictions panel: the same few validation images every epoch, with the
ground truth outlined in green and the current prediction tinted magenta.

Built from the numpy arrays in ``EpochEvent.previews`` (never live tensors).
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QFont, QFontMetrics, QPalette
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from loragui.engine.pairing_report import plural

from .overlay import GT_COLOUR, PRED_COLOUR, dice, preview_overlay

pg.setConfigOptions(imageAxisOrder="row-major")

MAX_COLUMNS = 4
MIN_IMAGE_HEIGHT = 72
MIN_CELL_WIDTH = 110  # pixels: below this the cells go two to a row
COLUMN_MARGIN = 48
CAPTION_POINTS = 9
CELL_PADDING = 28  # pixels of a column its caption leaves free (the label's margins, the spacing)
GRID_MARGIN = 2  # pixels around the cells' grid
GRID_SPACING = 4  # pixels between its rows and columns
NAME_KEPT = 4  # a name shortened to fewer characters than this no longer tells images apart


def _hex(colour: np.ndarray) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in colour)


def figures(p, score: float | None) -> list[tuple[str, ...]]:
    """What a preview's caption says after its name, part by part, each part's wordings
    longest first: its Dice and, in a run of objects, how many the prediction and the
    mask hold ([("Dice 0.81",), ("23 objects (mask 25)", "23/25 objects")])."""
    parts: list[tuple[str, ...]] = []
    if score is not None:
        parts.append((f"Dice {score:.2f}",))
    if p.predicted_objects is not None and p.true_objects is not None:
        parts.append((f"{plural(p.predicted_objects, 'object')} (mask {p.true_objects})",
                      f"{p.predicted_objects}/{p.true_objects} objects"))
    return parts


def one_line(name: str, parts: list[tuple[str, ...]]) -> str:
    """The whole caption on one line ("img_07 · Dice 0.81 · 23 objects (mask 25)")."""
    return " · ".join([name, *(wordings[0] for wordings in parts)])


def fit_caption(metrics: QFontMetrics, name: str, parts: list[tuple[str, ...]],
                width: int) -> list[str]:
    """The caption's lines in ``width`` pixels: one where it fits, else two (or, in the
    narrowest columns, one for the name and one for each figure). The first
    line holds the name, shortened in the middle if need be (to no fewer than NAME_KEPT
    of its characters), and as many of the figures as fit beside it; the second line
    the rest, in the shortest wording that fits. The figures are what the caption is
    for: they lose nothing to an ellipsis while some wording of them fits."""
    def fits(text: str) -> bool:
        return metrics.horizontalAdvance(text) <= width

    def elide(text: str, room: int, mode=Qt.TextElideMode.ElideMiddle) -> str:
        return metrics.elidedText(text, mode, room) if room > 0 else ""

    full = one_line(name, parts)
    if fits(full):
        return [full]
    kept = min(NAME_KEPT, len(name))
    for beside in range(len(parts), -1, -1):  # the more figures on the first line the better
        said = "".join(f" · {wordings[0]}" for wordings in parts[:beside])
        short = elide(name, width - metrics.horizontalAdvance(said))
        if beside and len(short.replace("…", "")) < kept:
            continue
        rest = parts[beside:]
        if not rest:
            return [short + said]
        longest = max(len(wordings) for wordings in rest)
        tries = [" · ".join(w[min(k, len(w) - 1)] for w in rest) for k in range(longest)]
        below = next((t for t in tries if fits(t)), None)
        if below is not None:
            return [short + said, below]
    # a line for the name and one for each figure
    return [elide(name, width)] + [
        next((w for w in wordings if fits(w)),
             elide(wordings[-1], width, Qt.TextElideMode.ElideRight)) for wordings in parts]


class Caption(pg.LabelItem):
    """A cell's caption asks for no width of its own: it is elided to its column
    (were its text its minimum, the grid could widen but never narrow again)."""

    def updateMin(self) -> None:
        super().updateMin()
        self.setMinimumWidth(0)

    def sizeHint(self, hint, constraint):
        size = super().sizeHint(hint, constraint)
        if hint in (Qt.SizeHint.MinimumSize, Qt.SizeHint.PreferredSize):
            size.setWidth(0)
        return size


class PredictionPreviews(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.epoch: int | None = None
        self.names: list[str] = []
        self.images: list[np.ndarray] = []  # the overlays last shown (for tests)
        self._items: list[tuple[pg.LabelItem, pg.ViewBox, pg.ImageItem]] = []
        self._captions: list[tuple[str, list]] = []  # (name, figures); each cell shows what fits
        self._shown_columns = 0

        self.title = QLabel("Predictions on validation images appear after the first validation.")
        self.title.setWordWrap(True)
        # Ignored horizontally: the title wraps in the room the legend leaves, and
        # neither widens the panel.
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.title.setMinimumWidth(80)
        self.legend = QLabel(
            f"<span style='color:{_hex(GT_COLOUR)}'>▬</span> ground truth outline &nbsp; "
            f"<span style='color:{_hex(PRED_COLOUR)}'>■</span> prediction")
        self.legend.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.view = pg.GraphicsLayoutWidget()
        # Room for a row of cells before the first cells are made; the cells' rows then
        # set it (the panel's minimum follows, so its splitter never cuts a row short).
        self.view.setMinimumHeight(self._grid_height([self._caption_height(1, 0)]))
        self.view.ci.setContentsMargins(GRID_MARGIN, GRID_MARGIN, GRID_MARGIN, GRID_MARGIN)
        self.view.ci.setSpacing(GRID_SPACING)

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
        self._fit_captions()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self.apply_palette()
        super().changeEvent(event)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._items and self._columns(len(self._items)) != self._shown_columns:
            self._ensure_cells(len(self._items), rebuild=True)
            for (_, box, item), rgb in zip(self._items, self.images, strict=False):
                item.setImage(rgb, autoLevels=False, levels=(0, 255))
                box.autoRange(padding=0)
        self._fit_captions()

    def _columns(self, n: int) -> int:
        """Up to MAX_COLUMNS; fewer where the cells would be narrower than
        MIN_CELL_WIDTH. Going back to more needs a margin more: the rows that fewer
        columns add may bring a scroll bar, which narrows the panel, and without the
        margin the cells would flip back and forth."""
        columns = min(n, MAX_COLUMNS)
        current = self._shown_columns or columns
        while columns > 1:
            need = columns * MIN_CELL_WIDTH + (COLUMN_MARGIN if columns > current else 0)
            if self.width() >= need:
                break
            columns = (columns + 1) // 2
        return columns

    def _fit_captions(self) -> None:
        """Each caption fitted to its column (a caption wider than its image would
        widen the grid past the panel and push the last column out of sight), on more
        lines where one is too narrow; a caption cut short shows in full as the cell's
        tooltip."""
        if not self._items:
            return
        columns = self._shown_columns or 1
        width = max(24, self.view.width() // columns - CELL_PADDING)
        font = QFont(self.font())
        font.setPointSize(CAPTION_POINTS)
        metrics = QFontMetrics(font)
        text = self.palette().color(QPalette.ColorRole.WindowText)
        lines_per_row: dict[int, int] = {}
        for i, ((label, _, _), (name, parts)) in enumerate(
                zip(self._items, self._captions, strict=False)):
            lines = fit_caption(metrics, name, parts, width)
            full = one_line(name, parts)
            label.setText("<br>".join(map(html.escape, lines)), color=text)
            label.setToolTip("" if lines == [full] else full)
            row = i // columns
            lines_per_row[row] = max(lines_per_row.get(row, 1), len(lines))
        self._set_caption_heights(lines_per_row, metrics.lineSpacing())

    def _set_caption_heights(self, lines_per_row: dict[int, int], spacing: int) -> None:
        """Each caption row as tall as its captions' lines; the view's minimum height
        follows, so that a row keeps MIN_IMAGE_HEIGHT of picture."""
        rows = -(-len(self._items) // (self._shown_columns or 1))
        heights = [self._caption_height(lines_per_row.get(r, 1), spacing) for r in range(rows)]
        for r, height in enumerate(heights):
            self.view.ci.layout.setRowFixedHeight(2 * r, height)
        self.view.setMinimumHeight(self._grid_height(heights))

    @staticmethod
    def _grid_height(captions: list[float]) -> int:
        """The grid's height for rows of these caption heights and MIN_IMAGE_HEIGHT of
        picture each, with its margins and the spacing between its rows."""
        rows = 2 * len(captions)
        return int(sum(captions) + len(captions) * MIN_IMAGE_HEIGHT + 2 * GRID_MARGIN
                   + (rows - 1) * GRID_SPACING) + 1

    def _caption_height(self, lines: int, spacing: int) -> float:
        one = 1.6 * self.fontMetrics().height()  # one line and the label's margins
        return one + (lines - 1) * spacing

    def clear(self) -> None:
        """Empty the cells (kept for the next run: making them costs ~30 ms)."""
        for label, _, image in self._items:
            label.setText("")
            label.setToolTip("")
            image.clear()
        self.names, self.images, self.epoch, self._captions = [], [], None, []
        self.title.setText("Predictions on validation images appear after the first validation.")

    def prepare(self, n: int) -> None:
        """Make the cells for ``n`` previews before the first epoch arrives."""
        if n > 0:
            self._ensure_cells(n)

    def _ensure_cells(self, n: int, rebuild: bool = False) -> None:
        if len(self._items) == n and not rebuild:
            return
        self.view.ci.clear()
        self._items.clear()
        columns = self._shown_columns = self._columns(n)
        rows = -(-n // columns)
        caption = self._caption_height(1, 0)
        # Each row at least MIN_IMAGE_HEIGHT of picture: where the window is short, the
        # column scrolls rather than shrink the images to a few pixels.
        self.view.setMinimumHeight(self._grid_height([caption] * rows))
        text = self.palette().color(QPalette.ColorRole.WindowText)
        for i in range(n):
            r, c = divmod(i, columns)
            label = Caption("", color=text, size=f"{CAPTION_POINTS}pt")
            self.view.ci.addItem(label, row=2 * r, col=c)
            self.view.ci.layout.setRowFixedHeight(2 * r, caption)
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
        self.names, self.images, self._captions = [], [], []
        drawn = overlays or [(None, None)] * len(previews)
        for (_, box, item), p, (rgb, score) in zip(self._items, previews, drawn, strict=False):
            if rgb is None:
                rgb, score = preview_overlay(p), dice(p.mask, p.prediction)
            resized = item.image is None or item.image.shape != rgb.shape
            item.setImage(rgb, autoLevels=False, levels=(0, 255))
            if resized:
                box.autoRange(padding=0)
            self._captions.append((p.name, figures(p, score)))
            self.names.append(p.name)
            self.images.append(rgb)
        when = "base model, before training" if epoch == 0 else (
            f"after epoch {epoch}" + (f" of {epochs}" if epochs else ""))
        self.title.setText(f"<b>Predictions</b> on validation images ({when})")
        self._fit_captions()
