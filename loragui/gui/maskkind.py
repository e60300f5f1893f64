"""What the masks hold, in the window: a choice (foreground/background by default, as
the command line's --masks-hold) and the list of classes with their colours.

The scan's proposal is shown but never chosen for the user: a run trains
foreground/background until classes or objects are picked here.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ..engine.errors import DataError
from ..engine.maskkinds import MaskMeaning, resolve

CHOICES = (("auto", "Foreground / background"), ("classes", "Classes (one per value)"),
           ("objects", "Objects (labels of one class)"))


class MaskKindChooser(QWidget):
    """Emits ``changed`` when the choice (or the classes it gives) changes."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.report = None
        self.meaning = MaskMeaning()
        self.combo = QComboBox()
        for value, words in CHOICES:
            self.combo.addItem(words, value)
        self.combo.setToolTip("What the masks hold: foreground/background (0 = background), "
                              "class ids (0 = background, 1, 2, ...) or object labels")
        self.combo.currentIndexChanged.connect(self._update)
        self.classes = QLabel()
        self.classes.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Masks hold:"))
        row.addWidget(self.combo, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.classes)
        self._update()

    @property
    def masks_hold(self) -> str:
        """The TrainConfig value of the choice."""
        return self.combo.currentData()

    def problem(self) -> str | None:
        """Why the choice cannot train these masks (None when it can)."""
        return self._problem

    def set_report(self, report) -> None:
        self.report = report
        self._update()

    def _update(self) -> None:
        self._problem = None
        self.meaning = MaskMeaning()
        hold = self.masks_hold
        if self.report is not None and hold != "auto":
            try:
                self.meaning = resolve(hold, [], self.report.proposal, self.report.masks_seen,
                                       self.report.masks_dir)
            except DataError as exc:
                self._problem = str(exc)
        self.classes.setText(self._text())
        self.changed.emit()

    def _text(self) -> str:
        if self._problem:
            return f"<span style='color:#c0392b'>{html.escape(self._problem)}</span>"
        if self.meaning.k > 1:
            return " ".join(
                f"<span style='color:{c.colour}; background:#333'>&nbsp;■&nbsp;</span>&nbsp;"
                f"{i}&nbsp;{html.escape(c.name)}&nbsp;"
                for i, c in enumerate(self.meaning.classes))
        if self.report is not None and self.report.proposal.kind != "binary":
            return html.escape(f"The scan saw {self.report.proposal.words.split('?')[0]}? "
                               f"Choose {self.report.proposal.kind.capitalize()} to train them so.")
        return ""
