"""The review's list of images: each with its split, Dice and "edited" mark, sorted
(worst Dice first) and filtered by split, and the moves through it: next and previous
(Page Down or ".", Page Up or ","; Up/Down while the list has the focus), a row chosen.

Whichever way the user moves, the list says which image to show (:attr:`ImageList.chosen`).
Its keys are the view's (:func:`.controls.key_action`), so they work wherever the focus
is in it.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QItemSelectionModel, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHeaderView,
    QLabel,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from .controls import key_action
from .items import DICE, SPLITS, ItemFilter, ItemTable, ReviewItem


class ImageList(QWidget):
    """The split filter, the list, and the count of images under it. ``scope``: the
    widget whose keys next and previous are (the review view); ``shown``: the image
    the view shows now (None: none), kept on a change of split while it is listed."""

    chosen = Signal(str)  # the image to show

    def __init__(self, scope: QWidget, shown: Callable[[], str | None], parent=None) -> None:
        super().__init__(parent)
        self._shown = shown
        # Until the user moves: the list's first (worst) image once every Dice is known.
        self._follow_worst = False
        self.table = ItemTable(self)
        self.filter = ItemFilter(self)
        self.filter.setSourceModel(self.table)
        self.filter.setDynamicSortFilter(True)
        self.list = QTableView()
        self.list.setModel(self.filter)
        self.list.setSortingEnabled(True)
        self.list.sortByColumn(DICE, Qt.SortOrder.AscendingOrder)  # the worst first
        self.list.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.verticalHeader().hide()
        header = self.list.horizontalHeader()
        for column in range(self.table.columnCount()):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.Stretch if column == 0
                                        else QHeaderView.ResizeMode.ResizeToContents)
        # Long names (hashes, dates) keep their start and end; the scores stay in view.
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.pressed.connect(self._user_moved)
        self.list.selectionModel().currentRowChanged.connect(
            lambda index, _: index.isValid() and self.chosen.emit(self._stem_at(index.row())))
        self.split_filter = QComboBox()
        self.split_filter.addItem("All images", None)
        for split in SPLITS:
            self.split_filter.addItem(split.capitalize(), split)
        self.split_filter.currentIndexChanged.connect(
            lambda _: self.set_split(self.split_filter.currentData()))
        self.counts = QLabel()
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.split_filter)
        column.addWidget(self.list, 1)
        column.addWidget(self.counts)

        key_action(scope, "Next", "PgDown", lambda: self.step(1), "the next image", extra=".")
        key_action(scope, "Previous", "PgUp", lambda: self.step(-1), "the previous image",
                   extra=",")

    def set_items(self, items: list[ReviewItem]) -> None:
        """List ``items``, and choose the first; once every Dice is known, the first
        again (the worst), unless the user has moved by then (:meth:`scores_changed`)."""
        self.table.set_items(items)
        self.update_counts()
        self._follow_worst = True
        if self.filter.rowCount():
            self._select(0)

    def scores_changed(self) -> None:
        """A Dice is known or changed: the counts say it, and the list's worst image is
        chosen when this was the last one to wait for."""
        self.update_counts()
        if self._follow_worst and all(i.dice is not None for i in self.table.items if i.mask):
            self._follow_worst = False
            if self.current_row() != 0:
                self._select(0)

    def visible_order(self) -> list[str]:
        """The stems of the list as the user sees it (sorted and filtered)."""
        return [self._stem_at(row) for row in range(self.filter.rowCount())]

    def select_row(self, row: int) -> None:
        """Show the image of this row of the list (as sorted and filtered)."""
        self._user_moved()
        self._select(row)

    def current_row(self) -> int:
        return self.list.selectionModel().currentIndex().row()

    def step(self, by: int) -> None:
        """The next (``by`` 1) or previous (-1) image of the list as sorted and filtered."""
        rows = self.filter.rowCount()
        if rows:
            self.select_row(min(max(self.current_row() + by, 0), rows - 1))

    def set_split(self, split: str | None) -> None:
        """Only the images of ``split`` (None: all); the first of them is chosen when the
        one shown is not among them."""
        self.filter.set_split(split)
        if self.filter.rowCount() and self._shown() not in self.visible_order():
            self._select(0)
        self.update_counts()

    def update_counts(self) -> None:
        items = self.table.items
        scored = [i.dice for i in items if i.dice is not None]
        text = f"{self.filter.rowCount()} of {len(items)} images"
        if scored:
            text += f" · mean Dice {sum(scored) / len(scored):.3f} ({len(scored)} scored)"
        self.counts.setText(text)

    def _stem_at(self, row: int) -> str:
        return self.table.items[self.filter.mapToSource(self.filter.index(row, 0)).row()].stem

    def _select(self, row: int) -> None:
        index = self.filter.index(row, 0)
        self.list.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows)
        self.list.scrollTo(index)

    def _user_moved(self, *_) -> None:
        self._follow_worst = False
