"""The canvas's controls in the review view: the editing tools (a toolbar, each tool
with its keys), the overlays (mask, prediction, outline, opacity) and, for a model of
several classes, the class the brush paints and the classes' legend.

They act on the canvas in use (:meth:`CanvasControls.attach`): the view makes a new
one for each editing session, and the controls' settings carry over to it. Their keys
are the view's (:func:`key_action`), so they work wherever the focus is in it.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from .canvas import MaskCanvas

# (tool, label, keys, what it does)
TOOLS = (("pan", "Pan", "H", "drag to move the image; the wheel zooms around the cursor"),
         ("brush", "Brush", "B", "paint the mask"),
         ("eraser", "Eraser", "E", "erase the mask"),
         ("fill", "Fill", "F", "fill the connected region under the cursor"),
         ("delete", "Delete object", "D", "remove the object under the cursor"))
BRUSH_STEP = 1.25  # [ and ] scale the brush by this much


def key_action(scope: QWidget, label: str, key: str, slot: Callable, what: str, *,
               extra: str | None = None) -> QAction:
    """An action with its keys (``key``, and ``extra`` if given) that work while the
    focus is anywhere in ``scope``; its tooltip names them."""
    action = QAction(label, scope)
    keys = [QKeySequence(key)] + ([QKeySequence(extra)] if extra else [])
    action.setShortcuts(keys)
    action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    names = " or ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in keys)
    action.setToolTip(f"{label}: {what} ({names})")
    action.triggered.connect(slot)
    scope.addAction(action)
    return action


class CanvasControls(QWidget):
    """Two rows above the canvas: the toolbar, then the overlays, the classes and
    ``status`` (where the view says what it waits for: listing, loading, predicting).
    ``scope``: the widget whose keys the tools' are (the review view)."""

    def __init__(self, scope: QWidget, parent=None) -> None:
        super().__init__(parent)
        self.canvas: MaskCanvas | None = None
        self.toolbar = QToolBar()

        def tool_key(label: str, key: str, slot: Callable, what: str) -> QAction:
            action = key_action(scope, label, key, slot, what)
            self.toolbar.addAction(action)
            return action

        self.tool_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for tool, label, key, what in TOOLS:
            action = tool_key(label, key, lambda _=False, t=tool: self.set_tool(t), what)
            action.setCheckable(True)
            group.addAction(action)
            self.tool_actions[tool] = action
        self.tool_actions["pan"].setChecked(True)
        self.toolbar.addSeparator()
        tool_key("Smaller", "[", lambda: self._scale_brush(1 / BRUSH_STEP), "a smaller brush")
        tool_key("Larger", "]", lambda: self._scale_brush(BRUSH_STEP), "a larger brush")
        self.accept_action = tool_key("Accept prediction", "A",
                                      lambda: self.canvas.accept_prediction(),
                                      "make the prediction this image's mask")
        self.toolbar.addSeparator()
        self.undo_action = tool_key("Undo", "Ctrl+Z", lambda: self.canvas.undo(),
                                    "undo the last edit")
        self.redo_action = tool_key("Redo", "Ctrl+Shift+Z", lambda: self.canvas.redo(), "redo")
        self.toolbar.addSeparator()
        tool_key("Fit", "Ctrl+0", lambda: self.canvas.fit_to_window(), "the whole image")
        tool_key("1:1", "Ctrl+1", lambda: self.canvas.actual_pixels(),
                 "one image pixel per screen pixel")

        self.show_mask = QCheckBox("Mask")
        self.show_prediction = QCheckBox("Prediction")
        self.outline = QCheckBox("Outline")
        for box in (self.show_mask, self.show_prediction):
            box.setChecked(True)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.setMaximumWidth(140)
        self.opacity.setToolTip("Opacity of the overlays")
        self.show_mask.toggled.connect(lambda on: self.canvas.set_overlay("mask", visible=on))
        self.show_prediction.toggled.connect(
            lambda on: self.canvas.set_overlay("prediction", visible=on))
        self.outline.toggled.connect(self._set_outline)
        self.opacity.valueChanged.connect(self._set_opacity)
        overlays = QHBoxLayout()
        for widget in (self.show_mask, self.show_prediction, self.outline, QLabel("Opacity"),
                       self.opacity):
            overlays.addWidget(widget)
        # A model of several classes: the class the brush and fill paint (keys 1-9).
        self.paint_class = QComboBox()
        self.paint_class.setToolTip("The class the brush and fill paint (keys 1 to 9); the "
                                    "eraser paints background")
        self.paint_class.currentIndexChanged.connect(
            lambda i: i >= 0 and self.canvas.set_paint_class(i + 1))
        self.paint_class_action = self.toolbar.addWidget(self.paint_class)
        self.paint_class_action.setVisible(False)
        for n in range(1, 10):
            key_action(scope, f"Class {n}", str(n), lambda _=False, n=n: self._pick_class(n),
                       f"paint class {n}")
        # A model of several classes: each class's colour and name (set_classes).
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.hide()
        overlays.addWidget(self.legend)
        overlays.addStretch(1)
        self.status = QLabel()
        overlays.addWidget(self.status)

        rows = QVBoxLayout(self)
        rows.setContentsMargins(0, 0, 0, 0)
        rows.addWidget(self.toolbar)
        rows.addLayout(overlays)

    def attach(self, canvas: MaskCanvas) -> None:
        """Act on ``canvas`` from now on, and draw it as the controls are set."""
        self.canvas = canvas
        for which, box in (("mask", self.show_mask), ("prediction", self.show_prediction)):
            canvas.set_overlay(which, visible=box.isChecked(), opacity=self.opacity.value() / 100,
                               outline=self.outline.isChecked())
        canvas.set_tool(self.tool())
        canvas.set_paint_class(max(self.paint_class.currentIndex(), 0) + 1)

    def tool(self) -> str:
        return next(t for t, a in self.tool_actions.items() if a.isChecked())

    def set_tool(self, tool: str) -> None:
        self.tool_actions[tool].setChecked(True)
        self.canvas.set_tool(tool)

    def set_classes(self, meaning) -> None:
        """The model's classes (a MaskMeaning of several, or None): the class to paint
        is picked among them, and the legend names them in their colours."""
        self.paint_class.blockSignals(True)
        self.paint_class.clear()
        for c in meaning.classes[1:] if meaning else ():
            self.paint_class.addItem(f"{c.value} {c.name}")
        self.paint_class.blockSignals(False)
        self.paint_class_action.setVisible(meaning is not None)
        if meaning is None:
            self.legend.hide()
            return
        self.legend.setText(" ".join(
            f"<span style='color:{c.colour}; background:#333'>&nbsp;■&nbsp;</span>&nbsp;"
            f"{html.escape(c.name)}&nbsp;" for c in meaning.classes[1:]))
        self.legend.setToolTip("The classes of the model: the mask filled, the prediction "
                               "outlined, each class in its colour. The brush and fill "
                               "paint the class chosen beside the tools; a saved correction "
                               "holds the classes' ids.")
        self.legend.show()

    def _pick_class(self, n: int) -> None:
        if n <= self.paint_class.count():  # (class n is item n - 1: background is not listed)
            self.paint_class.setCurrentIndex(n - 1)

    def _scale_brush(self, factor: float) -> None:
        size = self.canvas.brush_size()
        self.canvas.set_brush_size(max(1, round(size * factor) if factor < 1 else
                                       max(size + 1, round(size * factor))))

    def _set_outline(self, on: bool) -> None:
        for which in ("mask", "prediction"):
            self.canvas.set_overlay(which, outline=on)

    def _set_opacity(self, value: int) -> None:
        for which in ("mask", "prediction"):
            self.canvas.set_overlay(which, opacity=value / 100)
