"""The run bar above the training view: Train, Stop and Resume, the reason Train
is disabled (or how many pairs are ready), and the progress bar of the run."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStyle,
    QVBoxLayout,
    QWidget,
)

REASON_MIN_WIDTH = 160


class RunBar(QWidget):
    """``train()`` and ``stop()`` are called by their buttons; the Resume button is
    handed to :class:`~loragui.gui.resume.ResumeOffer`, which shows and connects it."""

    def __init__(self, *, train: Callable[[], None], stop: Callable[[], None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        style = self.style()
        self.train_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "Train")
        self.train_button.setToolTip("Start training (Ctrl+Return)")
        self.train_button.clicked.connect(train)
        self.stop_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop), "Stop")
        self.stop_button.setToolTip("Stop after the current step and keep the best adapter (Esc)")
        self.stop_button.clicked.connect(stop)
        self.resume_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaSeekForward),
                                         "Resume")
        self.review_button = QPushButton("Review…")
        self.review_button.setToolTip("Look at each image with the model's prediction, and "
                                      "correct the masks (Ctrl+R)")
        self.reason = QLabel()
        self.reason.setWordWrap(True)
        # Ignored horizontally: a long reason wraps in the room left and never widens
        # the window (a wrapped label's minimum is otherwise that of its longest word,
        # and a squeezed one wraps a few letters a line).
        self.reason.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.reason.setMinimumWidth(REASON_MIN_WIDTH)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        # Its place is kept while hidden: showing it at Train then moves nothing, and the
        # training view keeps its size (a resize repaints every plot and preview).
        keep = self.progress.sizePolicy()
        keep.setRetainSizeWhenHidden(True)
        keep.setHorizontalPolicy(QSizePolicy.Policy.Ignored)  # its text never widens the window
        self.progress.setSizePolicy(keep)
        self.progress.hide()

        # The reason sits beside the buttons, or below them where the bar is too narrow
        # for both (a small screen, a large scale): its minimum then never widens the
        # window, and the buttons keep their whole labels.
        self.buttons = QGridLayout()
        for column, button in enumerate((self.train_button, self.stop_button,
                                         self.resume_button, self.review_button)):
            self.buttons.addWidget(button, 0, column)
        self._beside: bool | None = None
        self._place_reason(beside=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.buttons)
        layout.addWidget(self.progress)
        self.setMinimumWidth(self._buttons_width())

    def _buttons_width(self) -> int:
        spacing = max(self.buttons.horizontalSpacing(), 0)
        widths = [b.sizeHint().width() for b in (self.train_button, self.stop_button,
                                                 self.resume_button, self.review_button)]
        return sum(widths) + spacing * (len(widths) - 1)

    def _place_reason(self, *, beside: bool) -> None:
        if beside == self._beside:
            return
        self._beside = beside
        self.buttons.removeWidget(self.reason)
        if beside:
            self.buttons.addWidget(self.reason, 0, 4)
            self.buttons.setColumnStretch(4, 1)
        else:
            self.buttons.addWidget(self.reason, 1, 0, 1, 5)
            self.buttons.setColumnStretch(4, 1)

    def resizeEvent(self, event) -> None:
        room = self._buttons_width() + max(self.buttons.horizontalSpacing(), 0) + REASON_MIN_WIDTH
        self._place_reason(beside=event.size().width() >= room)
        super().resizeEvent(event)

    def preparing(self) -> None:
        """A run starts: the bar shows until its first progress arrives."""
        # Not the busy animation: it repaints continuously (an eighth of a core) while
        # the child process starts, when the CPU is needed most.
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Preparing the data and the model…")
        self.progress.show()
        self.reason.setText("Training…")

    def stopping(self) -> None:
        self.progress.setFormat("Stopping after the current step…")
        self.reason.setText("Stopping…")

    def set_progress(self, step: int, total: int, text: str) -> None:
        # QProgressBar.setValue repaints at once (a paint and a flush of its own, ~4 ms);
        # with updates held back, the bar is painted with the curves in the next pass.
        bar = self.progress
        bar.setUpdatesEnabled(False)
        try:
            if bar.maximum() != max(total, 1):
                bar.setRange(0, max(total, 1))
            bar.setValue(step)
            bar.setFormat(text)
        finally:
            bar.setUpdatesEnabled(True)  # (schedules one update)

    def ended(self) -> None:
        self.progress.hide()
