"""The layers of the canvas: the image as a QImage, and a mask overlay that
repaints only the pixels a stroke touched.

An :class:`OverlayItem` owns a QImage over a numpy buffer of premultiplied ARGB
pixels (painting.render writes them), so a brush segment rewrites a few pixels
and asks Qt to repaint just their rectangle.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from . import painting


class OverlayItem(QGraphicsItem):
    """A mask drawn as a translucent layer at the image's pixels; ``redraw(box)``
    renders and repaints that box alone."""

    def __init__(self, look: painting.Look) -> None:
        super().__init__()
        self.look = look
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)
        self._pixels = np.zeros((0, 0), np.uint32)  # (H, W) premultiplied ARGB
        self._image = QImage()
        self._mask: np.ndarray | None = None
        self._classes: np.ndarray | None = None  # (H, W) uint8 class of each pixel, or None
        self.paints = 0  # paint calls, for the redraw benchmark

    def set_mask(self, mask: np.ndarray | None, classes: np.ndarray | None = None) -> None:
        """Show ``mask`` (kept by reference: the canvas paints into it); ``classes``:
        the class of each pixel, drawn in the look's class colours."""
        self.prepareGeometryChange()
        self._mask = mask
        self._classes = classes if mask is not None and classes is not None \
            and classes.shape == mask.shape else None
        if mask is None:
            self._pixels = np.zeros((0, 0), np.uint32)
            self._image = QImage()
        else:
            if self._pixels.shape != mask.shape:
                self._pixels = np.zeros(mask.shape, np.uint32)
                h, w = mask.shape
                self._image = QImage(self._pixels.data, w, h, 4 * w,
                                     QImage.Format.Format_ARGB32_Premultiplied)
            painting.render(mask, self.look, self._pixels, classes=self._classes)
        self.update()

    def set_look(self, look: painting.Look) -> None:
        self.look = look
        self.set_mask(self._mask, self._classes)

    @property
    def classes(self) -> np.ndarray | None:
        return self._classes

    def redraw(self, box: painting.Box) -> None:
        if self._mask is None:
            return
        rows, cols = painting.render(self._mask, self.look, self._pixels,
                                     painting.grown(box, self._mask.shape), self._classes)
        self.update(QRectF(cols.start, rows.start, cols.stop - cols.start,
                           rows.stop - rows.start))

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        h, w = self._pixels.shape
        return QRectF(0, 0, w, h)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        if self._image.isNull():
            return
        self.paints += 1
        exposed = option.exposedRect.toAlignedRect().intersected(self._image.rect())
        painter.drawImage(exposed, self._image, exposed)


def display_image(image: np.ndarray) -> QImage:
    """A QImage (a copy) of an (H, W) or (H, W, 3) image; other types are
    stretched to 8 bits for display."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.dtype != np.uint8:
        lo, hi = float(np.min(arr)), float(np.max(arr))
        arr = ((arr.astype(np.float32) - lo) * (255 / (hi - lo) if hi > lo else 0)).astype(np.uint8)
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        return QImage(arr.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    if arr.ndim == 3 and arr.shape[2] == 3:
        return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    raise ValueError(f"an image of shape {arr.shape} cannot be shown")
