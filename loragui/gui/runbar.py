"""The run bar above the training view: Train, Stop and Resume, the reason Train
is disabled (or how many pairs are ready), and the progress bar of the run."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import (
    QHBoxLayout,
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

        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.review_button)
        buttons.addWidget(self.reason, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)

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
