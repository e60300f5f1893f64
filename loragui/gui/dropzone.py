"""A drop target for a folder: drag one from the file manager, or click to browse."""

from __future__ import annotations

import html
import os
from pathlib import Path

from PySide6.QtCore import QRectF, Qt, QUrl, Signal
from PySide6.QtGui import (
    QDragEnterEvent,
    QDropEvent,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
)

GENERIC_NAMES = {"images", "image", "imgs", "img", "masks", "mask", "labels", "label", "gt",
                 "raw", "input", "inputs", "annotations", "train", "val", "test"}


def folder_from_paths(paths: list[Path]) -> Path | None:
    """The folder a drop means: a dropped folder itself, or the common folder of files."""
    paths = [Path(p) for p in paths if str(p)]
    if not paths:
        return None
    if len(paths) == 1 and (paths[0].is_dir() or not paths[0].suffix):
        return paths[0]  # a folder (or a name that looks like one: reported if missing)
    parents = [p if p.is_dir() else p.parent for p in paths]
    try:
        return Path(os.path.commonpath([str(p) for p in parents]))
    except ValueError:  # different drives on Windows
        return parents[0]


def local_paths(urls: list[QUrl]) -> list[Path]:
    return [Path(u.toLocalFile()) for u in urls if u.isLocalFile() and u.toLocalFile()]


class DropZone(QFrame):
    """Shows a title, what is loaded, and takes folders by drag and drop or a click.

    ``folderChosen(Path)`` is emitted with the folder a drop or the browse dialog gave.
    """

    folderChosen = Signal(Path)

    def __init__(self, title: str, hint: str, parent=None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(84)
        self.setAccessibleName(title)
        self.browse_dir = ""  # starting folder of the browse dialog
        self._title = title
        self._hint = hint
        self._hover = False

        self._title_label = QLabel(f"<b>{title}</b>")
        self._title_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._title_label.setForegroundRole(QPalette.ColorRole.Text)  # drawn on Base
        self._text = QLabel(hint)
        self._text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._text.setForegroundRole(QPalette.ColorRole.Text)  # drawn on Base
        self._text.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self._title_label)
        layout.addWidget(self._text)
        self.setToolTip(f"{title}: drop a folder here (or some of its files), or click to choose one")

    # -- state -------------------------------------------------------------------------
    def set_folder(self, folder: Path | str | None, detail: str = "") -> None:
        if not folder:
            self._text.setText(self._hint)
            self.setToolTip(f"{self._title}: drop a folder here, or click to choose one")
            return
        folder = Path(folder)
        name = folder.name or str(folder)
        if name.lower() in GENERIC_NAMES and folder.parent.name:
            name = f"{folder.parent.name}/{name}"  # "histology/images", not just "images"
        text = f"<b>{html.escape(name)}</b>"
        if detail:
            text += f"<br><small>{detail}</small>"
        self._text.setText(text)
        self.setToolTip(str(folder))

    def _set_hover(self, hover: bool) -> None:
        self._hover = hover
        self.update()

    def paintEvent(self, event) -> None:
        """A rounded, dashed frame drawn with palette colours (no style sheet), so
        light and dark themes, and a theme change at run time, just work."""
        palette = self.palette()
        group = QPalette.ColorGroup.Active if self.isEnabled() else QPalette.ColorGroup.Disabled
        back = palette.color(group, QPalette.ColorRole.AlternateBase if self._hover
                             else QPalette.ColorRole.Base)
        border = palette.color(group, QPalette.ColorRole.Highlight
                               if self._hover or self.hasFocus() else QPalette.ColorRole.Mid)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(border, 2, Qt.PenStyle.SolidLine if self.hasFocus()
                            else Qt.PenStyle.DashLine))
        painter.setBrush(back)
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(1, 1, -1, -1), 8, 8)

    # -- drag and drop -----------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if local_paths(event.mimeData().urls()):
            event.acceptProposedAction()
            self._set_hover(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:
        self._set_hover(False)

    def dropEvent(self, event: QDropEvent) -> None:
        self._set_hover(False)
        paths = local_paths(event.mimeData().urls())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.drop_paths(paths)

    def drop_paths(self, paths: list[Path]) -> None:
        """What a drop of these files or folders does (also used by the tests)."""
        folder = folder_from_paths(paths)
        if folder is not None:
            self.folderChosen.emit(folder)

    # -- click / keyboard to browse --------------------------------------------------------
    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.rect().contains(
                event.position().toPoint()):
            self.browse()
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            self.browse()
        else:
            super().keyPressEvent(event)

    def browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, f"Choose the {self._title.lower()} folder",
                                                  self.browse_dir)
        if folder:
            self.folderChosen.emit(Path(folder))
