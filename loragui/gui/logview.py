"""The log pane: plain lines, with warnings and errors standing out (coloured,
their first line bold), in colours that suit a light or a dark palette."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit

# level -> (colour on a light background, colour on a dark one)
LEVEL_COLOURS = {"warning": ("#a15c00", "#ffb74d"), "error": ("#c62828", "#ff8a80")}
PREFIXES = {"warning": "Warning: ", "error": "Error: "}


def level_colour(level: str, palette: QPalette, role=QPalette.ColorRole.Base) -> str | None:
    colours = LEVEL_COLOURS.get(level)
    if colours is None:
        return None
    return colours[palette.color(role).lightness() < 128]


class LogView(QPlainTextEdit):
    def __init__(self, parent=None, max_lines: int = 5000) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setMaximumBlockCount(max_lines)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)

    def add(self, message: str, level: str = "info") -> str:
        """Append ``message`` (several lines allowed); returns its first line as shown."""
        lines = (PREFIXES.get(level, "") + message).split("\n")
        bar = self.verticalScrollBar()
        follow = bar.value() >= bar.maximum() - 4  # keep following the end, unless scrolled up
        plain, first = QTextCharFormat(), QTextCharFormat()
        colour = level_colour(level, self.palette())
        if colour is not None:
            first.setForeground(QColor(colour))
            first.setFontWeight(QFont.Weight.Bold)
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        for i, line in enumerate(lines):
            fmt = first if i == 0 else plain
            if i > 0 or not self.document().isEmpty():
                cursor.insertBlock(cursor.blockFormat(), fmt)
            cursor.insertText(line, fmt)
        if follow:
            bar.setValue(bar.maximum())
        return lines[0]

    def line_format(self, text: str) -> QTextCharFormat | None:
        """The character format of the first block containing ``text`` (for tests)."""
        block = self.document().begin()
        while block.isValid():
            if text in block.text():
                cursor = QTextCursor(self.document())
                cursor.setPosition(block.position() + 1)  # after the block's first character
                return QTextCharFormat(cursor.charFormat())
            block = block.next()
        return None
