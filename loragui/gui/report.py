"""The pairing report: how many image/mask pairs were found, what is wrong with
the rest (grouped by kind, with file names), and a strip of overlay thumbnails."""

from __future__ import annotations

import html

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPalette, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .logview import level_colour
from .maskkind import window_choice

MAX_NAMES_SHOWN = 200  # per problem group; the rest are counted
THUMB_SIZE = 96


class WrappedRows(QTreeWidget):
    """A tree whose rows wrap at the view's width, with heights that follow it: each
    file's reason is read whole in its row, however narrow the pane."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setItemDelegate(_WrappingDelegate(self))
        self.setWordWrap(True)
        self.setUniformRowHeights(False)
        self.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.header().setStretchLastSection(True)

    def text_width(self, index) -> int:
        """The room for a row's text: the viewport less its indentation and icon."""
        depth = 0
        parent = index.parent()
        while parent.isValid():
            depth, parent = depth + 1, parent.parent()
        indent = self.indentation() * (depth + (1 if self.rootIsDecorated() else 0))
        icon = self.iconSize().width() + 4 if index.data(Qt.ItemDataRole.DecorationRole) else 0
        margin = 2 * (self.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin) + 1)
        return max(40, self.viewport().width() - indent - icon - margin - 2)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self.scheduleDelayedItemsLayout()  # the rows' heights follow the new width


class _WrappingDelegate(QStyledItemDelegate):
    def sizeHint(self, option, index) -> QSize:
        hint = super().sizeHint(option, index)
        view = self.parent()
        text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
        height = view.fontMetrics().boundingRect(
            QRect(0, 0, view.text_width(index), 100_000), Qt.TextFlag.TextWordWrap, text).height()
        return QSize(hint.width(), max(hint.height(), height + 4))


class PairingReportView(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.report = None
        self.hold = "auto"  # what the masks are trained as: the report's words follow it

        # A folder that was not taken: why, above the report of the folders still in use.
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.notice.hide()

        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Ignored horizontally: the text wraps at the pane's width, never widens it.
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.hide()

        # Each file's reason is read in its row: long rows wrap at the pane's width
        # (no sideways scrolling, nothing cut at the edge); the tooltip repeats it whole.
        self.problems = WrappedRows()
        self.problems.setHeaderHidden(True)
        self.problems.setColumnCount(1)
        self.problems.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.problems.setMaximumHeight(150)
        self.problems.setToolTip("Files that could not be paired or read, grouped by problem")
        self.problems.hide()

        self.thumbs = QListWidget()
        self.thumbs.setViewMode(QListView.ViewMode.IconMode)
        self.thumbs.setFlow(QListView.Flow.LeftToRight)
        self.thumbs.setWrapping(False)
        self.thumbs.setMovement(QListView.Movement.Static)
        self.thumbs.setResizeMode(QListView.ResizeMode.Adjust)
        self.thumbs.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.thumbs.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.thumbs.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.thumbs.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.thumbs.setFixedHeight(THUMB_SIZE + self.fontMetrics().height()
                                  + self.thumbs.horizontalScrollBar().sizeHint().height() + 14)
        self.thumbs.setToolTip("A few pairs: the mask is outlined in green")
        self.thumbs.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.notice)
        layout.addWidget(self.summary)
        layout.addWidget(self.progress)
        layout.addWidget(self.problems)
        layout.addWidget(self.thumbs)
        self.clear()

    def clear(self, message: str = "") -> None:
        self.report = None
        self.notice.hide()
        self.summary.setText(message or "Drop a folder of images and a folder of masks above.")
        self.progress.hide()
        self.problems.clear()
        self.problems.hide()
        self.thumbs.clear()
        self.thumbs.hide()

    def set_notice(self, message: str) -> None:
        """Why the folder just chosen was not taken (until the next report or scan)."""
        colour = level_colour("error", self.palette(), QPalette.ColorRole.Window) or ""
        self.notice.setText(f"<span style='color:{colour}'><b>Not used:</b> "
                            f"{html.escape(message)}</span>")
        self.notice.show()

    def set_scanning(self, text: str = "Looking for image/mask pairs…") -> None:
        self.clear(text)
        self.progress.setRange(0, 0)  # busy until the first progress report
        self.progress.show()

    def set_progress(self, done: int, total: int, message: str = "") -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(message or "Checking pairs: %v / %m")

    def set_report(self, report) -> None:
        self.clear()
        self.report = report
        self._show_problems()
        if report.pairs:
            self.thumbs.show()

    def set_masks_hold(self, hold: str) -> None:
        """What the masks are trained as (auto, binary, classes, objects): the summary and
        the problems say what that does with them; the thumbnails stay."""
        self.hold = hold
        if self.report is not None:
            self._show_problems()

    def _show_problems(self) -> None:
        report = self.report
        n = len(report.pairs)
        full = report.summary(hold=self.hold, choose=window_choice)
        first, _, rest = full.partition("\n")
        if n == 0:
            text = f"<b>No usable pairs.</b> {html.escape(rest or first)}"
        else:
            text = f"<b>{n} pair{'s' if n != 1 else ''}</b> of image and mask found."
        self.summary.setText(text)
        self.summary.setToolTip(full)
        self.problems.clear()
        self.problems.hide()
        groups = report.problem_groups(self.hold, choose=window_choice)
        warn = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        for title, names in groups:
            names = list(names)
            top = QTreeWidgetItem([title])  # the title carries the count
            top.setIcon(0, warn)
            top.setToolTip(0, title)
            for name in names[:MAX_NAMES_SHOWN]:
                child = QTreeWidgetItem([str(name)])
                child.setToolTip(0, str(name))
                top.addChild(child)
            if len(names) > MAX_NAMES_SHOWN:
                top.addChild(QTreeWidgetItem([f"… and {len(names) - MAX_NAMES_SHOWN} more"]))
            self.problems.addTopLevelItem(top)
        if groups:
            if len(groups) == 1:
                self.problems.expandAll()
            self.problems.show()

    def set_thumbnail(self, index: int, image: QImage, name: str) -> None:
        while self.thumbs.count() <= index:
            item = QListWidgetItem()
            item.setSizeHint(QSize(THUMB_SIZE + 12, THUMB_SIZE + self.fontMetrics().height() + 12))
            self.thumbs.addItem(item)
        item = self.thumbs.item(index)
        if not image.isNull():
            item.setIcon(QIcon(QPixmap.fromImage(image)))
        metrics = self.fontMetrics()
        item.setText(metrics.elidedText(name, Qt.TextElideMode.ElideMiddle, THUMB_SIZE + 4))
        item.setToolTip(name)
