"""The canvas of the review view: an image at full resolution with its mask and
prediction as overlays, zoom and pan, and the tools that correct the mask.

The image is a pixmap at one scene unit per pixel, so zooming in shows its real
pixels (smoothing only below 1:1). Each overlay is an item that owns a QImage
over a numpy buffer: a brush segment rewrites and repaints only the few pixels
it touched, which keeps strokes interactive on 2048x2048 images. The masks and
their history live in the :class:`~loragui.gui.review.editing.EditSession`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QKeySequence, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QGraphicsEllipseItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from .. import qtfix
from . import painting
from .editing import EditSession
from .layers import OverlayItem, display_image

qtfix.keep_singletons_alive()  # before anything is drawn: see qtfix.py

TOOLS = ("pan", "brush", "eraser", "fill", "delete")
MIN_ZOOM, MAX_ZOOM = 1 / 64, 64.0
MIN_BRUSH, MAX_BRUSH = 1, 256
ZOOM_STEP = 1.25  # per wheel notch
BRUSH_STEP = 1.2  # per [ or ] key, or Ctrl+wheel notch


class MaskCanvas(QGraphicsView):
    """Shows one image of the review view and edits its mask.

    Zoom with the wheel (around the cursor), pan by dragging with the pan tool,
    the middle button or Space held; brush and eraser (size with [ and ] or
    Ctrl+wheel), fill, delete an object, accept the prediction; undo and redo
    (Ctrl+Z, Ctrl+Shift+Z) walk the session's history across images and ask for
    another image (``imageRequested``) when the change is on one.
    """

    maskChanged = Signal(str)  # noqa: N815 - Qt's naming
    imageRequested = Signal(str)  # noqa: N815

    def __init__(self, session: EditSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self._image_item = QGraphicsPixmapItem()
        self._image_item.setTransformationMode(Qt.TransformationMode.FastTransformation)
        self._prediction_item = OverlayItem(painting.PREDICTION_LOOK)
        self._mask_item = OverlayItem(painting.MASK_LOOK)
        # The brush outline: a white circle inside a dark one, seen on any image.
        self._cursor = QGraphicsEllipseItem()
        self._cursor.setPen(self._cursor_pen(QColor(0, 0, 0, 200), 3))
        self._cursor_inner = QGraphicsEllipseItem(self._cursor)
        self._cursor_inner.setPen(self._cursor_pen(QColor(255, 255, 255, 230), 1))
        for ring in (self._cursor, self._cursor_inner):
            ring.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self._cursor.setVisible(False)
        # The prediction's outline over the mask's fill: both edges show where they differ.
        for z, item in enumerate((self._image_item, self._mask_item, self._prediction_item,
                                  self._cursor)):
            item.setZValue(z)
            self._scene.addItem(item)
        self._mask_item.setOpacity(1.0)
        self._prediction_item.setOpacity(0.9)
        # Zooming keeps the point under the cursor in place (set_zoom anchors it itself:
        # Qt's AnchorUnderMouse reads the global cursor, not the wheel event).
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.MinimalViewportUpdate)
        self.setBackgroundBrush(QColor(40, 40, 40))
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._stem: str | None = None
        self._mask: np.ndarray | None = None  # the working copy strokes paint into
        self._prediction: np.ndarray | None = None
        self._mask_classes: np.ndarray | None = None  # the class map of the given mask
        self._paint_value: bool | int = True  # what brush and fill paint (a class in a class map)
        self._tool = "brush"
        self._brush = 9
        self._stroke: tuple[float, float] | None = None  # the last point of a stroke
        self._stroke_box: painting.Box | None = None
        self._pan_from: QPointF | None = None  # a middle-button or Space pan in progress
        self._space = False
        self._applying = False
        self._brush_wheel = 0.0  # Ctrl+wheel notches not yet turned into brush steps
        listener = self._session_changed
        session.on_change.append(listener)
        # The session may outlive the canvas: it forgets the canvas with its widget.
        self.destroyed.connect(lambda *_: listener in session.on_change
                               and session.on_change.remove(listener))
        self.set_tool("brush")

    # -- what is shown

    def current_stem(self) -> str | None:
        return self._stem

    def show_image(self, stem: str, image: np.ndarray, mask: np.ndarray | None,
                   classes: np.ndarray | None = None) -> None:
        """Show ``image`` with the session's mask of ``stem`` (``mask``: the stored
        one, or None; ``classes``: its class map, for a class mask). The view keeps
        its zoom when the size stays, else fits."""
        qimage = display_image(image)
        same_size = self._mask is not None and self._mask.shape == (qimage.height(),
                                                                   qimage.width())
        self._end_stroke()
        shown = self.session.open(stem, mask, (qimage.height(), qimage.width()))
        self._stem = stem
        self._mask = shown.copy()
        self._mask_classes = classes
        self._image_item.setPixmap(QPixmap.fromImage(qimage))
        self._scene.setSceneRect(QRectF(0, 0, qimage.width(), qimage.height()))
        self._mask_item.set_mask(self._mask, self._mask_classes)
        self.set_prediction(None)
        if not same_size:
            self.fit_to_window()

    def mask(self) -> np.ndarray | None:
        """The mask shown now (a stroke in progress included)."""
        return self._mask

    def set_class_colours(self, colours: list[str] | None) -> None:
        """A model of several classes: the mask's and the prediction's class maps are
        drawn in these colours (index = class); None: one colour each, as for
        foreground/background."""
        classes = tuple(painting.rgb(c) for c in colours or ())
        for item in (self._mask_item, self._prediction_item):
            item.set_look(dataclasses.replace(item.look, classes=classes))

    def set_paint_class(self, index: int) -> None:
        """Brush and fill paint class ``index`` (a session of class maps; the eraser
        paints the background, 0)."""
        self._end_stroke()
        self._paint_value = int(index) if self.session.meaning is not None else True

    def paint_class(self) -> int:
        return int(self._paint_value)

    def set_mask_classes(self, classes: np.ndarray | None) -> None:
        """The class of each pixel of the image's mask (from a class mask), or None."""
        self._mask_classes = classes
        self._mask_item.set_mask(self._mask, classes)

    def set_prediction(self, prediction: np.ndarray | None,
                       classes: np.ndarray | None = None) -> None:
        """Show ``prediction`` (bool foreground); ``classes``: its class map, each class
        in its colour (:meth:`set_class_colours`)."""
        if prediction is not None:
            prediction = np.asarray(prediction, dtype=bool)
            if self._mask is None or prediction.shape != self._mask.shape:
                raise ValueError(f"a prediction of shape {prediction.shape} for an image of "
                                 f"{None if self._mask is None else self._mask.shape}")
        self._prediction = prediction
        self._prediction_item.set_mask(prediction, classes if prediction is not None else None)

    def set_overlay(self, which: str, *, visible: bool | None = None,
                    opacity: float | None = None, outline: bool | None = None) -> None:
        item = {"mask": self._mask_item, "prediction": self._prediction_item}.get(which)
        if item is None:
            raise ValueError(f"no overlay {which!r}: 'mask' or 'prediction'")
        if visible is not None:
            item.setVisible(visible)
        if opacity is not None:
            item.setOpacity(min(max(float(opacity), 0.0), 1.0))
        if outline is not None and outline != item.look.outline:
            item.set_look(dataclasses.replace(item.look, outline=outline))

    def overlay(self, which: str) -> OverlayItem:
        return {"mask": self._mask_item, "prediction": self._prediction_item}[which]

    # -- tools

    def tool(self) -> str:
        return self._tool

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"no tool {tool!r}: one of {', '.join(TOOLS)}")
        self._end_stroke()
        self._tool = tool
        self._update_drag_mode()
        self._cursor.setVisible(False)

    def brush_size(self) -> int:
        return self._brush

    def set_brush_size(self, pixels: int) -> None:
        self._brush = int(min(max(pixels, MIN_BRUSH), MAX_BRUSH))

    def _step_brush(self, steps: float) -> None:
        size = self._brush * BRUSH_STEP ** steps
        # At least one pixel per step, so small brushes change too.
        if steps > 0:
            size = max(size, self._brush + 1)
        elif steps < 0:
            size = min(size, self._brush - 1)
        self.set_brush_size(round(size))

    def accept_prediction(self) -> None:
        """The prediction becomes the mask of the image shown (one undoable change)."""
        if self._stem is None or self._prediction is None:
            return
        self._end_stroke()
        classes = self._prediction_item.classes
        if self.session.meaning is not None and classes is not None:  # class maps
            self._apply(classes.copy(), "accept prediction")
            return
        if classes is not None:  # its classes are shown as the mask's from now on
            self._mask_classes = classes.copy()
        self._apply(self._prediction.copy(), "accept prediction")

    def undo(self) -> None:
        self._end_stroke()
        self._after_history(self.session.undo())

    def redo(self) -> None:
        self._end_stroke()
        self._after_history(self.session.redo())

    def _after_history(self, stem: str | None) -> None:
        if stem is None:
            return
        if stem != self._stem:
            self.imageRequested.emit(stem)
        self.maskChanged.emit(stem)

    def _apply(self, new_mask: np.ndarray, what: str,
               within: painting.Box | None = None) -> None:
        """Record ``new_mask`` in the session; show it unless it is the working mask
        (a stroke, shown as it was drawn, whose box is ``within``)."""
        assert self._stem is not None
        self._applying = True
        try:
            self.session.apply(self._stem, new_mask, what, within=within)
        finally:
            self._applying = False
        if new_mask is not self._mask:
            self._mask = self.session.current(self._stem).copy()
            self._mask_item.set_mask(self._mask, self._mask_classes)
        self.maskChanged.emit(self._stem)

    def _session_changed(self, stem: str) -> None:
        """A change of the session (undo, redo, or from outside): show it if it is ours."""
        if self._applying or stem != self._stem:
            return
        current = self.session.current(stem)
        if current is not None and not np.array_equal(current, self._mask):
            self._mask = current.copy()
            self._mask_item.set_mask(self._mask, self._mask_classes)

    # -- zoom and pan

    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, factor: float, around: QPointF | None = None) -> None:
        """Zoom to ``factor`` keeping the scene point under ``around`` (a viewport
        position: the cursor's) where it is; the view's centre when None."""
        factor = min(max(factor, MIN_ZOOM), MAX_ZOOM)
        if around is None:
            around = QPointF(self.viewport().rect().center())
        inverse, _ = self.viewportTransform().inverted()
        anchor = inverse.map(around)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.scale(factor / self.zoom(), factor / self.zoom())
        moved = self.viewportTransform().map(anchor) - around
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + round(moved.x()))
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + round(moved.y()))
        self._zoom_changed()

    def fit_to_window(self) -> None:
        if self._mask is None:
            return
        self.fitInView(self._scene.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
        self._zoom_changed()

    def actual_pixels(self) -> None:
        """One image pixel per screen pixel."""
        self.resetTransform()
        self._zoom_changed()

    def _zoom_changed(self) -> None:
        # Smoothing only where the image is shrunk; above 1:1 its pixels stay sharp.
        smooth = self.zoom() < 1
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        self._image_item.setTransformationMode(
            Qt.TransformationMode.SmoothTransformation if smooth
            else Qt.TransformationMode.FastTransformation)

    def _update_drag_mode(self) -> None:
        panning = self._tool == "pan" or self._space
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag if panning
                         else QGraphicsView.DragMode.NoDrag)
        self.viewport().setCursor(Qt.CursorShape.OpenHandCursor if panning
                                  else Qt.CursorShape.CrossCursor)

    @staticmethod
    def _cursor_pen(colour: QColor, width: int) -> QPen:
        pen = QPen(colour, width)
        pen.setCosmetic(True)  # in screen pixels at any zoom
        return pen

    # -- events

    def _scene_point(self, pos: QPointF) -> tuple[float, float]:
        """The scene point under the centre of the screen pixel at ``pos``."""
        inverse, _ = self.viewportTransform().inverted()
        p = inverse.map(QPointF(pos.x() + 0.5, pos.y() + 0.5))
        return p.x(), p.y()

    def _pixel(self, point: tuple[float, float]) -> tuple[int, int]:
        return int(np.floor(point[1])), int(np.floor(point[0]))

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt's name
        notches = event.angleDelta().y() / 120
        if not notches:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            # A touchpad sends fractions of a notch: the brush steps once per whole one.
            self._brush_wheel += notches
            steps = int(self._brush_wheel)
            if steps:
                self._brush_wheel -= steps
                self._step_brush(steps)
            self._show_cursor(event.position())
        else:
            self.set_zoom(self.zoom() * ZOOM_STEP ** notches, event.position())
        event.accept()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.MiddleButton or (
                event.button() == Qt.MouseButton.LeftButton and self._space):
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if event.button() != Qt.MouseButton.LeftButton or self._mask is None or self._tool == "pan":
            super().mousePressEvent(event)
            return
        point = self._scene_point(event.position())
        if self._tool in ("brush", "eraser"):
            self._stroke = point
            self._stroke_box = None
            self._segment(point, point)
        else:
            row, col = self._pixel(point)
            if self._tool == "fill":
                new = painting.fill_region(self._mask, row, col, self._paint_value)
            else:
                new = painting.delete_object(self._mask, row, col)
            if new is not None:
                self._apply(new, self._tool)
        event.accept()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - round(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - round(delta.y()))
            event.accept()
            return
        if self._stroke is not None:
            point = self._scene_point(event.position())
            self._segment(self._stroke, point)
            self._stroke = point
            self._show_cursor(event.position())
            event.accept()
            return
        self._show_cursor(event.position())
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton,
                                                             Qt.MouseButton.LeftButton):
            self._pan_from = None
            self._update_drag_mode()
            event.accept()
            return
        if self._stroke is not None and event.button() == Qt.MouseButton.LeftButton:
            self._end_stroke()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._cursor.setVisible(False)
        super().leaveEvent(event)

    def _segment(self, p0: tuple[float, float], p1: tuple[float, float]) -> None:
        """Paint one brush segment into the working mask and repaint only its pixels."""
        assert self._mask is not None
        value = self._paint_value if self._tool == "brush" else 0
        box = painting.stroke(self._mask, p0, p1, self._brush, value)
        if box is None:
            return
        self._mask_item.redraw(box)
        old = self._stroke_box
        self._stroke_box = box if old is None else (
            slice(min(old[0].start, box[0].start), max(old[0].stop, box[0].stop)),
            slice(min(old[1].start, box[1].start), max(old[1].stop, box[1].stop)))

    def _end_stroke(self) -> None:
        """Record a stroke in progress in the session as one change."""
        if self._stroke is None:
            return
        self._stroke = None
        if self._stroke_box is not None and self._stem is not None:
            self._apply(self._mask, self._tool, within=self._stroke_box)
        self._stroke_box = None

    def _show_cursor(self, pos: QPointF) -> None:
        if self._tool not in ("brush", "eraser") or self._mask is None or self._space:
            self._cursor.setVisible(False)
            return
        x, y = self._scene_point(pos)
        r = self._brush / 2
        self._cursor.setRect(QRectF(x - r, y - r, 2 * r, 2 * r))
        self._cursor_inner.setRect(QRectF(x - r, y - r, 2 * r, 2 * r))
        self._cursor.setVisible(True)

    def event(self, event) -> bool:  # noqa: A003 - Qt's name
        # Take the canvas's keys before any menu shortcut of the window does.
        if event.type() == QEvent.Type.ShortcutOverride and self._handles(event):
            event.accept()
            return True
        return super().event(event)

    def _handles(self, event) -> bool:
        return (event.matches(QKeySequence.StandardKey.Undo)
                or event.matches(QKeySequence.StandardKey.Redo) or self._is_redo(event)
                or event.key() in (Qt.Key.Key_BracketLeft, Qt.Key.Key_BracketRight, Qt.Key.Key_Space))

    @staticmethod
    def _is_redo(event) -> bool:
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        return event.key() == Qt.Key.Key_Z and mods == (Qt.KeyboardModifier.ControlModifier
                                                        | Qt.KeyboardModifier.ShiftModifier)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if self._is_redo(event) or event.matches(QKeySequence.StandardKey.Redo):
            self.redo()
        elif event.matches(QKeySequence.StandardKey.Undo):
            self.undo()
        elif event.key() == Qt.Key.Key_BracketRight:
            self._step_brush(1)
        elif event.key() == Qt.Key.Key_BracketLeft:
            self._step_brush(-1)
        elif event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._end_stroke()
            self._space = True
            self._cursor.setVisible(False)
            self._update_drag_mode()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def keyReleaseEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._pan_from = None
            self._update_drag_mode()
            event.accept()
            return
        super().keyReleaseEvent(event)
