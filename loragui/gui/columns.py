"""The window's two columns, each a scroll area: where the window is smaller than
their parts (a small screen, a large scale factor) they scroll up and down, so
the window's minimum stays small and nothing is cut."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from .results import ResultsPanel
from .runbar import RunBar
from .welcome import WelcomePage

SETUP_MIN_WIDTH = 280


class SetupColumn(QScrollArea):
    """The Data and Settings boxes, one above the other."""

    def __init__(self, data: QWidget, settings: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        data_box = QGroupBox("Data")
        QVBoxLayout(data_box).addWidget(data)
        settings_box = QGroupBox("Settings")
        QVBoxLayout(settings_box).addWidget(settings)
        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addWidget(data_box)
        layout.addWidget(settings_box)
        layout.addStretch(1)
        self.setWidgetResizable(True)
        self.setWidget(inner)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)

    def minimumSizeHint(self) -> QSize:
        """As narrow as its parts allow, and never narrower: they scroll up and down,
        never sideways (a report cut at the pane's edge)."""
        hint = super().minimumSizeHint()
        needed = (self.widget().minimumSizeHint().width() + 2 * self.frameWidth()
                  + self.verticalScrollBar().sizeHint().width())
        return QSize(max(SETUP_MIN_WIDTH, needed), hint.height())


class CompactStack(QStackedWidget):
    """Pages asking for no more than their minimum: the room left to them is theirs,
    and a page's natural height (the plots ask for a lot) never makes the column
    scroll."""

    def sizeHint(self) -> QSize:
        return self.minimumSizeHint()


class RunColumn(QScrollArea):
    """The run bar, the welcome page or the training view, and the results panel.

    ``train()`` and ``stop()`` are what the run bar's buttons do."""

    def __init__(self, *, train: Callable[[], None], stop: Callable[[], None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_bar = RunBar(train=train, stop=stop)
        self.welcome = WelcomePage()
        self.stack = CompactStack()
        self.stack.addWidget(self.welcome)
        self.results = ResultsPanel()
        self.results.hide()
        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addWidget(self.run_bar)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.results)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        self.setWidget(inner)

    def needed_width(self) -> int:
        return self.widget().minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
