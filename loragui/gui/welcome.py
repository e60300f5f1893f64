"""The page the window shows before the first run: what to do, in four steps."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QWidget

WELCOME = """
<h2>Adapt the segmentation model to your images</h2>
<ol>
<li>Drop a folder of <b>images</b> and a folder of <b>masks</b> on the left
(or one folder holding <i>images/</i> and <i>masks/</i>).</li>
<li>Check the settings: the defaults are a good start.</li>
<li>Press <b>Train</b> (Ctrl+Return). The loss and Dice curves and the predicted
masks appear here while it trains; Stop (Esc) keeps the best adapter so far.</li>
<li>Export the adapter (Ctrl+E), or predict masks for a folder of new images.</li>
</ol>
"""


class WelcomePage(QScrollArea):
    """The steps, centred; on a short window they scroll instead of being cut."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel(WELCOME)
        self.label.setWordWrap(True)
        self.label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.label.setMaximumWidth(720)
        self.label.setContentsMargins(24, 12, 24, 48)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        page = QWidget()
        layout = QHBoxLayout(page)
        layout.addWidget(self.label, 0, Qt.AlignmentFlag.AlignCenter)
        self.setWidget(page)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
