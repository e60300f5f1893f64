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
from ..engine.maskkinds import CLASSES_FILE, MaskMeaning, resolve

LABEL = "Masks hold"
# (value, name, what it means); the window's words name a choice by its name.
CHOICES = (("auto", "Foreground / background", ""), ("classes", "Classes", "one per value"),
           ("objects", "Objects", "labels of one class"))


def choice_name(kind: str) -> str:
    return next(name for value, name, _ in CHOICES if value == kind)


def window_choice(kind: str) -> str:
    """How the window says to train the masks as ``kind`` (classes or objects): its
    Masks hold choice, in the engine's words in place of the command line's option."""
    naming = f" (name them in a {CLASSES_FILE} beside the masks)" if kind == "classes" else ""
    return f"choose {choice_name(kind)} under {LABEL}{naming}"


class MaskKindChooser(QWidget):
    """Emits ``changed`` when the choice (or the classes it gives) changes."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.report = None
        self.meaning = MaskMeaning()
        self.combo = QComboBox()
        for value, name, meaning in CHOICES:
            self.combo.addItem(f"{name} ({meaning})" if meaning else name, value)
        self.combo.setToolTip("What the masks hold: foreground/background (0 = background), "
                              "class ids (0 = background, 1, 2, ...) or object labels")
        self.combo.currentIndexChanged.connect(self._update)
        self.classes = QLabel()
        self.classes.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel(f"{LABEL}:"))
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
                                       self.report.masks_dir, choose=window_choice)
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
        proposal = self.report.proposal if self.report is not None else None
        if proposal is not None and proposal.kind != "binary":
            return html.escape(f"The scan saw {proposal.seen} Choose "
                               f"{choice_name(proposal.kind)} to train them so.")
        return ""
