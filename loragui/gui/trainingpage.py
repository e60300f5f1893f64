"""The run column's curves and previews page: made once, while the window is idle after
start-up (~0.1 s of pyqtgraph set-up), so that pressing Train does not pay for it, and
shown in place of the welcome page when a run starts."""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QStackedWidget

# The previews are painted this much after the page is shown: the plots' first paint
# after a re-layout is the costly part, and it then has a pass of its own.
SHOW_VIEW_DELAY_MS = 20


class TrainingPage:
    def __init__(self, stack: QStackedWidget) -> None:
        self.stack = stack
        self.view = None  # TrainingView, once built

    def build(self):
        """The TrainingView (made on the first call; pyqtgraph is imported by then)."""
        if self.view is None:
            from loragui.engine.config import TrainConfig  # torch-free

            from .training import TrainingView  # pyqtgraph: imported by the start-up thread

            self.view = TrainingView()
            self.stack.addWidget(self.view)
            self.view.previews.prepare(TrainConfig().previews)
            # Lay it out and paint it once, off screen: the first real paint, when
            # training starts, then finds its fonts and pictures ready.
            self.view.resize(self.stack.size())
            self.view.grab()
        return self.view

    def show(self) -> None:
        """The page replaces the welcome page; its previews are painted in the next pass."""
        view = self.view
        if view is None or self.stack.currentWidget() is view:
            return
        view.previews.setUpdatesEnabled(False)
        self.stack.setCurrentWidget(view)
        QTimer.singleShot(SHOW_VIEW_DELAY_MS, lambda: view.previews.setUpdatesEnabled(True))
