"""The image with its mask and prediction overlays; painting edits the session's mask."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

from ..overlay import as_rgb, outline
from .editing import EditSession

COLOURS = {"mask": (40, 230, 90), "prediction": (255, 40, 220)}


def _rgba(mask: np.ndarray, colour, show_outline: bool) -> QImage:
    m = outline(mask, 2) if show_outline else mask
    a = np.zeros(mask.shape + (4,), np.uint8)
    a[m] = (*colour, 255)
    h, w = mask.shape
    return QImage(a.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


class MaskCanvas(QGraphicsView):
    maskChanged = Signal(str)
    imageRequested = Signal(str)

    def __init__(self, session: EditSession, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self._image = QGraphicsPixmapItem()
        self._layers = {k: QGraphicsPixmapItem() for k in COLOURS}
        self._style = {k: {"visible": True, "opacity": 0.5, "outline": k == "prediction"}
                       for k in COLOURS}
        for z, item in enumerate([self._image, *self._layers.values()]):
            item.setZValue(z)
            self.scene().addItem(item)
        self._stem: str | None = None
        self._prediction: np.ndarray | None = None
        self._tool, self._size = "pan", 9
        self._stroke: np.ndarray | None = None
        self.set_tool("pan")
        session.on_change.append(self._session_changed)

    def show_image(self, stem: str, image: np.ndarray, mask: np.ndarray | None) -> None:
        rgb = as_rgb(image)
        h, w = rgb.shape[:2]
        self._stem, self._prediction = stem, None
        qimage = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self._image.setPixmap(QPixmap.fromImage(qimage))
        self.scene().setSceneRect(0, 0, w, h)
        self.session.open(stem, mask, (h, w))
        self._draw("mask")
        self._draw("prediction")

    def set_prediction(self, prediction: np.ndarray | None) -> None:
        self._prediction = None if prediction is None else np.asarray(prediction) > 0.5
        self._draw("prediction")

    def set_overlay(self, which: str, *, visible=None, opacity=None, outline=None) -> None:
        style = self._style[which]
        for key, value in (("visible", visible), ("opacity", opacity), ("outline", outline)):
            if value is not None:
                style[key] = value
        self._draw(which)

    def set_tool(self, tool: str) -> None:
        self._tool = tool
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag if tool == "pan"
                         else QGraphicsView.DragMode.NoDrag)

    def set_brush_size(self, pixels: int) -> None:
        self._size = max(1, int(pixels))

    def brush_size(self) -> int:
        return self._size

    def accept_prediction(self) -> None:
        if self._stem is not None and self._prediction is not None:
            self.session.apply(self._stem, self._prediction, "accept prediction")

    def undo(self) -> None:
        self.session.undo()

    def redo(self) -> None:
        self.session.redo()

    def fit_to_window(self) -> None:
        self.fitInView(self.scene().sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)

    def actual_pixels(self) -> None:
        self.resetTransform()

    def zoom(self) -> float:
        return self.transform().m11()

    def current_stem(self) -> str | None:
        return self._stem

    # -- drawing ---------------------------------------------------------------------
    def _draw(self, which: str) -> None:
        item, style = self._layers[which], self._style[which]
        mask = self._shown_mask() if which == "mask" else self._prediction
        item.setVisible(mask is not None and style["visible"])
        item.setOpacity(style["opacity"])
        if mask is not None:
            item.setPixmap(QPixmap.fromImage(_rgba(mask, COLOURS[which], style["outline"])))

    def _shown_mask(self) -> np.ndarray | None:
        if self._stem is None:
            return None
        return self._stroke if self._stroke is not None else self.session.current(self._stem)

    def _session_changed(self, stem: str) -> None:
        if stem == self._stem:
            self._draw("mask")
            self.maskChanged.emit(stem)

    def wheelEvent(self, event) -> None:
        factor = 1.25 if event.angleDelta().y() > 0 else 0.8
        self.scale(factor, factor)

    def _pixel(self, event) -> tuple[int, int]:
        p: QPointF = self.mapToScene(event.position().toPoint())
        return int(p.y()), int(p.x())

    def mousePressEvent(self, event) -> None:
        if self._tool == "pan" or self._stem is None or event.button() != Qt.MouseButton.LeftButton:
            return super().mousePressEvent(event)
        mask = self.session.current(self._stem)
        y, x = self._pixel(event)
        if not (0 <= y < mask.shape[0] and 0 <= x < mask.shape[1]):
            return None
        if self._tool in ("fill", "delete"):
            from skimage.segmentation import flood

            region = flood(mask, (y, x), connectivity=1)
            new = mask.copy()
            if self._tool == "fill" and not mask[y, x]:
                new[region] = True
            elif self._tool == "delete" and mask[y, x]:
                new[region] = False
            if not np.array_equal(new, mask):
                self.session.apply(self._stem, new, self._tool)
            return None
        self._stroke = mask.copy()
        self._paint(y, x)
        return None

    def mouseMoveEvent(self, event) -> None:
        if self._stroke is None:
            return super().mouseMoveEvent(event)
        self._paint(*self._pixel(event))
        return None

    def mouseReleaseEvent(self, event) -> None:
        if self._stroke is None:
            return super().mouseReleaseEvent(event)
        stroke, self._stroke = self._stroke, None
        self.session.apply(self._stem, stroke, self._tool)
        return None

    def _paint(self, y: int, x: int) -> None:
        h, w = self._stroke.shape
        r = self._size / 2
        yy, xx = np.ogrid[:h, :w]
        self._stroke[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = self._tool == "brush"
        self._draw("mask")
