"""Live training curves: loss per step (raw and smoothed), validation loss and
Dice per epoch, the best epoch marked, the base model's Dice as a reference.

Curves are drawn from growing numpy buffers with ``curve.setData`` (the pyqtgraph
scrolling-plot habit); the window calls :meth:`TrainingCurves.redraw` at most a
few times a second, whatever the step rate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QGraphicsItem, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from loragui.engine.runcompare import Curves

pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)

# Okabe-Ito colours, a lighter and a darker variant for dark and light backgrounds.
COLOURS = {
    "train": ("#56B4E9", "#0072B2"),
    "val": ("#E69F00", "#D55E00"),
    "dice": ("#2BD4A0", "#009E73"),
    "best": ("#F0E442", "#CC79A7"),
}


MIN_LIGHTNESS_GAP = 70  # HSL lightness (0-255) a curve keeps from the plot's background


def visible_on(colour: QColor, background: QColor) -> QColor:
    """``colour``, or a variant of its hue that keeps :data:`MIN_LIGHTNESS_GAP` of
    lightness from ``background`` (darker on a light background, lighter on a dark)."""
    gap = colour.lightness() - background.lightness()
    if abs(gap) >= MIN_LIGHTNESS_GAP:
        return QColor(colour)
    h, s, _, a = colour.getHsl()
    if background.lightness() >= 128:
        lightness = max(0, background.lightness() - MIN_LIGHTNESS_GAP - 10)
    else:
        lightness = min(255, background.lightness() + MIN_LIGHTNESS_GAP + 10)
    return QColor.fromHsl(max(h, 0), s, lightness, a)


class Buffer:
    """A growing (n, columns) float array; ``view()`` is the filled part."""

    def __init__(self, columns: int, capacity: int = 1024) -> None:
        self._data = np.empty((capacity, columns), dtype=np.float64)
        self.n = 0

    def extend(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self._data.shape[1])
        need = self.n + len(rows)
        if need > len(self._data):
            grown = np.empty((max(need, 2 * len(self._data)), self._data.shape[1]))
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n:need] = rows
        self.n = need

    def view(self) -> np.ndarray:
        return self._data[: self.n]

    def clear(self) -> None:
        self.n = 0


class TrainingCurves(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.ema_beta = 0.95
        self._ema = 0.0
        self._ema_weight = 0.0
        self.steps = Buffer(3)  # step, raw loss, smoothed loss
        self.epochs = Buffer(5)  # epoch, step, val loss, dice, train loss
        self.best: tuple[int, float] | None = None
        self._dice_width = 2.5  # the mean of several classes is drawn bolder than they are
        self._class_curves: dict[str, pg.PlotDataItem] = {}
        self._class_points: dict[str, list[tuple[int, float]]] = {}
        self._class_colours: list[str] = []  # the run's, index = class (set_class_colours)
        self.base_dice: float | None = None
        self._dirty = False

        self.view = pg.GraphicsLayoutWidget()
        self.view.ci.setContentsMargins(4, 4, 4, 4)
        self.loss_plot = self.view.addPlot(row=0, col=0)
        self.dice_plot = self.view.addPlot(row=0, col=1)
        for plot in (self.loss_plot, self.dice_plot):
            plot.setDownsampling(auto=True, mode="peak")
            plot.setClipToView(True)
            plot.setMenuEnabled(False)
            # No grid: pyqtgraph draws a grid as part of each axis, which then covers the
            # whole plot and costs 10-25 ms to repaint (tick text and lines, in software)
            # whenever anything under it changes. Without one an axis is a thin strip,
            # cached as a pixmap and drawn again only when its range changes. A fixed
            # width for the value axis keeps new tick labels (0.8 -> 0.75) from changing
            # the layout, which would repaint every item of both plots.
            for name in ("left", "bottom"):
                plot.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
            plot.getAxis("left").setWidth(52)
        self.loss_plot.getViewBox().setLimits(xMin=0)
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLabel("left", "loss")
        self.dice_plot.setLabel("bottom", "epoch")
        self.dice_plot.setLabel("left", "Dice")
        self.dice_plot.setYRange(0, 1, padding=0.02)
        self.dice_plot.getViewBox().setLimits(xMin=-0.5, yMin=-0.05, yMax=1.05)

        self.loss_legend = self.loss_plot.addLegend(offset=(-8, 8))
        # Thin and translucent: drawn without antialiasing (a third cheaper, looks the same).
        self.raw_curve = self.loss_plot.plot(name="training (each step)", antialias=False)
        self.ema_curve = self.loss_plot.plot(name="training (smoothed)")
        self.val_curve = self.loss_plot.plot(name="validation", symbol="o", symbolSize=6)
        # In a left corner, away from the base model's line (see set_base_dice).
        self.dice_legend = self.dice_plot.addLegend(offset=(8, 8))
        self.dice_curve = self.dice_plot.plot(name="validation Dice", symbol="o", symbolSize=6)
        self.best_point = pg.ScatterPlotItem(size=16, symbol="star", name="best epoch")
        self.dice_plot.addItem(self.best_point)  # (named: the legend lists it)
        self.best_line = pg.InfiniteLine(angle=90, movable=False)
        self.best_line.hide()
        self.dice_plot.addItem(self.best_line)
        # The base model's Dice: a dotted line, named in the legend (a label on the
        # line itself would run under the legend in a small plot).
        self.base_line = pg.InfiniteLine(angle=0, movable=False)
        self.base_line.hide()
        self.dice_plot.addItem(self.base_line)
        self.base_entry = pg.PlotDataItem()  # the legend's sample of the line, never drawn

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.apply_palette()
        self.reset()

    # -- colours that follow the system theme ------------------------------------------------
    def apply_palette(self) -> None:
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        text = palette.color(QPalette.ColorRole.Text)
        dark = background.lightness() < 128
        pick = {k: QColor(v[0] if dark else v[1]) for k, v in COLOURS.items()}
        self.view.setBackground(background)
        for plot in (self.loss_plot, self.dice_plot):
            for name in ("left", "bottom"):
                axis = plot.getAxis(name)
                axis.setPen(pg.mkPen(text))
                axis.setTextPen(pg.mkPen(text))
        for legend in (self.loss_legend, self.dice_legend):
            legend.setLabelTextColor(text)
            for _, label in legend.items:  # (setLabelTextColor only affects new text)
                label.setText(label.text, color=text)
            legend.setBrush(pg.mkBrush(QColor(background.red(), background.green(),
                                              background.blue(), 215)))
        raw = QColor(pick["train"])
        raw.setAlpha(80)
        self.raw_curve.setPen(pg.mkPen(raw, width=1))
        self.ema_curve.setPen(pg.mkPen(pick["train"], width=2.5))
        self.val_curve.setPen(pg.mkPen(pick["val"], width=2))
        self.val_curve.setSymbolBrush(pick["val"])
        self.val_curve.setSymbolPen(pg.mkPen(pick["val"]))
        self.dice_curve.setPen(pg.mkPen(pick["dice"], width=self._dice_width))
        self.dice_curve.setSymbolBrush(pick["dice"])
        self.dice_curve.setSymbolPen(pg.mkPen(pick["dice"]))
        self.best_point.setBrush(pg.mkBrush(pick["best"]))
        self.best_point.setPen(pg.mkPen(text))
        self.best_line.setPen(pg.mkPen(pick["best"], width=1.5, style=Qt.PenStyle.DashLine))
        self.base_line.setPen(pg.mkPen(text, width=1, style=Qt.PenStyle.DotLine))
        self.base_entry.setPen(pg.mkPen(text, width=1, style=Qt.PenStyle.DotLine))
        self.loss_plot.setTitle("Loss", color=text)
        self.dice_plot.setTitle("Validation Dice", color=text)
        for i, curve in enumerate(self._class_curves.values(), start=1):
            curve.setPen(self._class_pen(i))

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.PaletteChange:
            self.apply_palette()
        super().changeEvent(event)

    # -- data ----------------------------------------------------------------------------
    def reset(self, total_steps: int = 0, epochs: int = 0) -> None:
        self.steps.clear()
        self.epochs.clear()
        self._ema = self._ema_weight = 0.0
        self.best = None
        self.base_dice = None
        self._epochs_drawn: tuple | None = None  # (epochs, best) the curves show
        # Smooth over ~2 % of the run (at least 10 steps) so short and long runs look alike.
        span = max(10.0, total_steps / 50.0)
        self.ema_beta = 1.0 - 1.0 / span
        for curve in (self.raw_curve, self.ema_curve, self.val_curve, self.dice_curve):
            curve.setData([], [])
        self.best_point.setData([], [])
        self.best_line.hide()
        self.set_base_dice(None)
        for curve in self._class_curves.values():
            self.dice_plot.removeItem(curve)
            self.dice_legend.removeItem(curve)
        self._class_curves, self._class_points = {}, {}
        self._class_colours = []
        if self._dice_width != 2.5:
            self._dice_width = 2.5
            self.apply_palette()
        if total_steps:
            self.loss_plot.setXRange(0, total_steps, padding=0.02)
        if epochs:
            self.dice_plot.setXRange(-0.25, epochs + 0.25, padding=0)
            step = max(1, int(np.ceil(epochs / 10)))  # whole epochs only
            self.dice_plot.getAxis("bottom").setTickSpacing(step, step)
        # The loss axis is fitted by _fit_loss_range, not auto-ranged at every point:
        # each change of range redraws the axis and its tick labels.
        self.loss_plot.disableAutoRange(axis="y")
        self._loss_range: tuple[float, float] | None = None
        self._dirty = False

    def add_steps(self, steps: list[int], losses: list[float]) -> None:
        if not steps:
            return
        rows = np.empty((len(steps), 3))
        rows[:, 0] = steps
        rows[:, 1] = losses
        for i, loss in enumerate(losses):
            if np.isfinite(loss):
                self._ema = self.ema_beta * self._ema + (1 - self.ema_beta) * loss
                self._ema_weight = self.ema_beta * self._ema_weight + (1 - self.ema_beta)
            rows[i, 2] = self._ema / self._ema_weight if self._ema_weight else np.nan
        self.steps.extend(rows)
        self._dirty = True

    def add_epoch(self, epoch: int, step: int, val_loss: float | None, dice: float | None,
                  train_loss: float | None = None, best_epoch: int | None = None,
                  best_dice: float | None = None) -> None:
        nan = float("nan")
        self.epochs.extend([[epoch, step, nan if val_loss is None else val_loss,
                             nan if dice is None else dice,
                             nan if train_loss is None else train_loss]])
        if epoch == 0 and dice is not None:
            self.set_base_dice(dice)
        if best_epoch is not None and best_dice is not None and best_epoch > 0:
            self.best = (best_epoch, best_dice)
        self._dirty = True

    def set_class_colours(self, colours: list[str] | None) -> None:
        """The run's class colours ("#rrggbb", index = class, as its masks' classes.json
        or the window's class list gives them): each class's curve is drawn in its own.
        None or empty: the default palette (after :meth:`reset`, which forgets them)."""
        self._class_colours = list(colours or [])
        for i, curve in enumerate(self._class_curves.values(), start=1):
            curve.setPen(self._class_pen(i))

    def class_colour(self, index: int) -> QColor:
        """The colour class ``index``'s curve is drawn in: the run's, made darker (on a
        light plot) or lighter (on a dark one) where it would hardly show on the plot's
        background (white, black or a grey class)."""
        from ..engine.maskkinds import PALETTE

        given = self._class_colours[index] if index < len(self._class_colours) else \
            PALETTE[(index - 1) % len(PALETTE)]
        return visible_on(QColor(given), self.palette().color(QPalette.ColorRole.Base))

    def _class_pen(self, index: int):
        return pg.mkPen(self.class_colour(index), width=1.2)

    def add_classes(self, epoch: int, classes: dict[str, dict[str, float]]) -> None:
        """A run of several classes: a thin curve of each foreground class's validation
        Dice (in the run's colour of that class, :meth:`set_class_colours`); the mean, the
        run's Dice, is drawn bold. The background is left out: its Dice is high whatever
        the classes do."""
        if not self._class_curves and len(classes) > 1:
            self._dice_width = 4.5
            self.apply_palette()
        for i, (name, figures) in enumerate(classes.items()):
            if i == 0 or figures.get("dice") is None:  # (None: a past epoch's empty cell)
                continue
            points = self._class_points.setdefault(name, [])
            points.append((epoch, figures["dice"]))
            curve = self._class_curves.get(name)
            if curve is None:
                curve = self.dice_plot.plot(name=name, pen=self._class_pen(i))
                self._class_curves[name] = curve
            curve.setData([p[0] for p in points], [p[1] for p in points])

    def add_history(self, curves: Curves, best_epoch: int | None = None,
                    best_dice: float | None = None) -> None:
        """A run's recorded epochs (:func:`~loragui.engine.runcompare.read_curves`): the
        validation by epoch and, for a run of several classes, each class's Dice in its
        colour, as they were drawn while it trained."""
        if curves.colours:
            self.set_class_colours(curves.colours)
        for i, epoch in enumerate(curves.epochs):
            self.add_epoch(int(epoch), curves.steps[i] or 0, curves.val_loss[i],
                           curves.dice[i], curves.train_loss[i], best_epoch, best_dice)
            if curves.classes:
                self.add_classes(int(epoch), {name: {"dice": values[i]}
                                              for name, values in curves.classes.items()})

    def set_base_dice(self, dice: float | None) -> None:
        self.base_dice = dice
        self.dice_legend.removeItem(self.base_entry)
        if dice is None:
            self.base_line.hide()
        else:
            self.base_line.setValue(dice)
            self.base_line.show()
            self.dice_legend.addItem(self.base_entry, f"base model {dice:.2f}")
            # The legend in the left corner away from the line: Dice rises from the
            # base model's value, so that corner stays free of the curve too.
            if dice >= 0.4:  # (the label sits above the line)
                self.dice_legend.anchor((0, 1), (0, 1), (8, -8))
            else:
                self.dice_legend.anchor((0, 0), (0, 0), (8, 8))

    def _fit_loss_range(self, *values: np.ndarray) -> None:
        """Show all the losses; move the axis only when one falls outside it, or when
        they fill less than half of it (a falling loss: a few moves per run)."""
        v = np.concatenate([np.asarray(a, dtype=np.float64) for a in values])
        v = v[np.isfinite(v)]
        if not len(v):
            return
        lo, hi = float(v.min()), float(v.max())
        span = hi - lo or abs(hi) or 1.0
        current = self._loss_range
        if current is not None and current[0] <= lo and hi <= current[1] \
                and hi - lo >= 0.5 * (current[1] - current[0]) - 1e-12:
            return
        self._loss_range = (lo - 0.08 * span, hi + 0.08 * span)
        self.loss_plot.setYRange(*self._loss_range, padding=0)

    def redraw(self) -> None:
        """Push the buffers to the curves (cheap; call after a batch of events)."""
        if not self._dirty:
            return
        self._dirty = False
        s = self.steps.view()
        if len(s):
            self.raw_curve.setData(s[:, 0], s[:, 1])
            self.ema_curve.setData(s[:, 0], s[:, 2])
        e = self.epochs.view()
        self._fit_loss_range(s[:, 1], e[:, 2])
        # The per-epoch items change once an epoch: between epochs they are left alone, so
        # a redraw repaints the loss curves only (their symbols are the costly part).
        if (len(e), self.best) == self._epochs_drawn:
            return
        self._epochs_drawn = (len(e), self.best)
        if len(e):
            has_val = np.isfinite(e[:, 2])
            self.val_curve.setData(e[has_val, 1], e[has_val, 2])
            has_dice = np.isfinite(e[:, 3])
            self.dice_curve.setData(e[has_dice, 0], e[has_dice, 3])
        if self.best is not None:
            self.best_point.setData([self.best[0]], [self.best[1]])
            self.best_line.setValue(self.best[0])
            self.best_line.show()
