"""Runs side by side: their validation Dice and loss curves overlaid (one colour per
run, the legend naming them) and their settings in a table, the differing ones
highlighted. The curves come from each run's metrics.csv (``engine.runs``).

pyqtgraph is imported here: the runs view makes this widget only when asked to compare.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPalette
from PySide6.QtWidgets import (
    QHeaderView,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from loragui.engine.runcompare import Curves, compare_settings
from loragui.engine.runs import RunRow

# Okabe-Ito: told apart with colour-blindness too; a ninth run reuses the first colour.
RUN_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
               "#000000")


def _text(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return str(value)


class RunComparison(QWidget):
    """The curves and the settings of the runs :meth:`show_runs` is given."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.plots = pg.GraphicsLayoutWidget()
        self.dice_plot = self.plots.addPlot(row=0, col=0, title="Validation Dice")
        self.loss_plot = self.plots.addPlot(row=0, col=1, title="Loss (solid: training, "
                                                                "dashed: validation)")
        for plot in (self.dice_plot, self.loss_plot):
            plot.setMenuEnabled(False)
            plot.setLabel("bottom", "epoch")
        self.dice_plot.setYRange(0, 1, padding=0.02)
        self.dice_legend = self.dice_plot.addLegend(offset=(-8, -8))
        self.loss_legend = self.loss_plot.addLegend(offset=(-8, 8))
        # One entry per run and curve: (run path, "dice" | "train_loss" | "val_loss") -> item
        self.curves: dict[tuple[str, str], pg.PlotDataItem] = {}

        self.table = QTableWidget()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setToolTip("Settings that differ between the runs are highlighted")

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.plots)
        splitter.addWidget(self.table)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.apply_palette()

    def apply_palette(self) -> None:
        """The plots in the window's colours (light or dark, as the system is)."""
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.Text)
        self.plots.setBackground(palette.color(QPalette.ColorRole.Base))
        for plot in (self.dice_plot, self.loss_plot):
            plot.setTitle(plot.titleLabel.text, color=text)
            for name in ("left", "bottom"):
                plot.getAxis(name).setPen(pg.mkPen(text))
                plot.getAxis(name).setTextPen(pg.mkPen(text))
        for legend in (self.dice_legend, self.loss_legend):
            legend.setLabelTextColor(text)

    def show_runs(self, rows: list[RunRow], curves: list[Curves]) -> None:
        """Overlay these runs' curves and tabulate their settings."""
        for plot in (self.dice_plot, self.loss_plot):
            plot.clear()  # the legends are emptied too
        self.curves.clear()
        for i, (row, c) in enumerate(zip(rows, curves, strict=True)):
            colour = QColor(RUN_COLOURS[i % len(RUN_COLOURS)])
            pen = pg.mkPen(colour, width=2)
            self.curves[(row.path, "dice")] = self.dice_plot.plot(
                *_pairs(c.epochs, c.dice), pen=pen, symbol="o", symbolSize=5,
                symbolBrush=colour, symbolPen=colour, name=row.name)
            self.curves[(row.path, "train_loss")] = self.loss_plot.plot(
                *_pairs(c.epochs, c.train_loss), pen=pen, name=row.name)
            self.curves[(row.path, "val_loss")] = self.loss_plot.plot(
                *_pairs(c.epochs, c.val_loss), pen=pg.mkPen(colour, width=2,
                                                            style=Qt.PenStyle.DashLine))
        self._fill_table(rows)

    def _fill_table(self, rows: list[RunRow]) -> None:
        settings = compare_settings(rows)
        table = self.table
        table.clear()
        table.setColumnCount(len(rows))
        table.setRowCount(len(settings) + 3)
        table.setHorizontalHeaderLabels([r.name for r in rows])
        highlight = self.palette().color(QPalette.ColorRole.Highlight)
        highlight.setAlpha(70)
        bold = QFont(table.font())
        bold.setBold(True)
        lines = [("status", [r.status for r in rows], False),
                 ("base Dice", [_dice(r.base_dice) for r in rows], False),
                 ("best Dice", [_dice(r.best_dice) for r in rows], False)]
        # the differing settings first: what the comparison is for
        lines += [(s.name, s.values, s.differs) for s in sorted(settings, key=lambda s: not s.differs)]
        table.setVerticalHeaderLabels([name for name, _, _ in lines])
        for r, (_, values, differs) in enumerate(lines):
            for col, value in enumerate(values):
                item = QTableWidgetItem(_text(value))
                if differs:
                    item.setBackground(QBrush(highlight))
                    item.setFont(bold)
                item.setData(Qt.ItemDataRole.UserRole, differs)
                item.setToolTip(_text(value))
                table.setItem(r, col, item)
            if differs:
                table.verticalHeaderItem(r).setFont(bold)

    def differing(self) -> list[str]:
        """The names of the highlighted settings."""
        return [self.table.verticalHeaderItem(r).text() for r in range(self.table.rowCount())
                if self.table.item(r, 0) is not None
                and self.table.item(r, 0).data(Qt.ItemDataRole.UserRole)]


def _pairs(xs: list[float], ys: list[float | None]) -> tuple[list[float], list[float]]:
    """The points that were measured (an epoch without validation has no Dice)."""
    kept = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def _dice(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
