"""Where the window's messages go: every line in the log; warnings and errors
also stand out in the status bar, where the latest stays (with a count of the
others) until the next run starts."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QSizePolicy, QStatusBar, QWidget

from .logview import LogView, level_colour

STATUS_CHARS = 110  # the status bar shows this much of a warning's first line


class Messages:
    """``log_view`` holds every line; ``status_bar`` shows the latest warning;
    ``palette_of`` is the widget whose palette colours the warning."""

    def __init__(self, log_view: LogView, status_bar: QStatusBar, palette_of: QWidget) -> None:
        self.log_view, self.status_bar, self._palette_of = log_view, status_bar, palette_of
        self.warnings: list[str] = []  # warnings and errors logged since the run started
        self.warning_label = QLabel()
        self.warning_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Ignored horizontally: a long warning is cut at the window's edge (the log
        # holds it whole), it never widens the window.
        self.warning_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.warning_label.hide()
        status_bar.addPermanentWidget(self.warning_label, 1)  # made now: no layout shift later

    def log(self, message: str, level: str = "info") -> None:
        headline = self.log_view.add(message, level)
        colour = level_colour(level, self._palette_of.palette(), QPalette.ColorRole.Window)
        if colour is None:
            return
        self.warnings.append(headline)
        first = message.split("\n", 1)[0]
        short = first if len(first) <= STATUS_CHARS else first[:STATUS_CHARS - 3] + "…"
        more = f"  (+{len(self.warnings) - 1} more in the log)" if len(self.warnings) > 1 else ""
        self.warning_label.setText(f"<span style='color:{colour}'>⚠ {html.escape(short)}</span>"
                                   + html.escape(more))
        self.warning_label.setToolTip("\n".join(self.warnings[-10:]))
        self.warning_label.show()

    def clear(self) -> None:
        """A run starts: the warnings shown are those of the runs before."""
        self.warnings.clear()
        self.warning_label.hide()

    def run_ended(self, result, *, finished: bool, not_better: bool) -> None:
        """The log's lines for a run's end (a RunFinished, else a RunFailed); a failure is
        said in the run column, the log keeps one line and the details."""
        if not finished:
            self.log(f"Training failed (the run column says why).\n{result.details}".rstrip(),
                     "error")
            return
        verb = "Stopped" if result.stopped else "Finished"
        self.log(f"{verb} after {result.steps} steps. Adapter: {result.output}")
        if result.early_stopped:
            self.log(f"Training ended early: {result.reason}.")
        if not_better:
            self.log("The adapter is not better than the base model on the validation images.",
                     "warning")
