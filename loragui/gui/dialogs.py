"""Message boxes, the About dialog and the exception hook.

An error is said once, where it belongs: a folder that cannot be used in the
Data box's report, a base model that cannot be used under its box, a run that
failed in the run column. The rest (an export or a prediction that failed, an
unexpected exception) is a ``QMessageBox`` with the message and, behind "Show
Details…", the technical details; nothing fails silently and an unexpected
exception shows a dialog instead of ending the program.
"""

from __future__ import annotations

import html
import platform
import sys
import threading
import traceback
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

import loragui


def show_error(parent: QWidget | None, message: str, details: str = "",
               title: str = "loragui", icon=QMessageBox.Icon.Critical) -> None:
    """A modal message with optional details (setDetailedText)."""
    box = QMessageBox(parent)
    box.setIcon(icon)
    box.setWindowTitle(title)
    box.setText(message)
    box.setTextFormat(Qt.TextFormat.PlainText)
    if details:
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.exec()


def show_warning(parent: QWidget | None, message: str, details: str = "",
                 title: str = "loragui") -> None:
    show_error(parent, message, details, title, QMessageBox.Icon.Warning)


def ask_yes_no(parent: QWidget | None, title: str, question: str) -> bool:
    answer = QMessageBox.question(parent, title, question,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def about_text(info: dict[str, Any]) -> str:
    """The About dialog's HTML from what the window knows (torch version, devices)."""
    rows = [
        ("loragui", loragui.__version__),
        ("PyTorch", info.get("torch", "loading…")),
        ("Qt / PySide6", _qt_versions()),
        ("Python", platform.python_version()),
    ]
    devices = info.get("devices")
    if devices is None:
        device_lines = "looking…"
    else:
        device_lines = "<br>".join(
            html.escape(f"{d.name}: {d.label}" + ("" if d.available else f" — {d.reason}"))
            for d in devices)
    table = "".join(f"<tr><td><b>{html.escape(k)}</b>&nbsp;</td><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    return (
        "<h3>loragui</h3><p>Adapt a pretrained UNet segmentation model to your images "
        "with LoRA.</p>"
        f"<table>{table}<tr><td valign='top'><b>Devices</b>&nbsp;</td><td>{device_lines}</td></tr>"
        "</table>"
    )


def _qt_versions() -> str:
    import PySide6
    from PySide6.QtCore import qVersion

    return f"{qVersion()} / {PySide6.__version__}"


def show_about(parent: QWidget | None, info: dict[str, Any]) -> QMessageBox:
    box = QMessageBox(parent)
    box.setWindowTitle("About loragui")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(about_text(info))
    box.setIconPixmap(parent.windowIcon().pixmap(64, 64) if parent else box.iconPixmap())
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.exec()
    return box


# -- exception hook ------------------------------------------------------------------------

class _Relay(QObject):
    """Carries an exception report to the GUI thread, whichever thread raised it."""

    raised = Signal(str, str)


_relay: _Relay | None = None
_showing = False


def _show_exception(message: str, details: str) -> None:
    global _showing
    if _showing:  # one dialog at a time; the rest go to stderr only
        return
    _showing = True
    try:
        show_error(QApplication.activeWindow(), message, details, "loragui: unexpected error")
    finally:
        _showing = False


def install_excepthook() -> None:
    """Show unexpected exceptions (any thread) in a dialog instead of dying."""
    global _relay
    if _relay is not None:
        return
    _relay = _Relay()
    _relay.raised.connect(_show_exception, Qt.ConnectionType.QueuedConnection)

    def hook(exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(details)
        from loragui.engine.errors import LoraGuiError

        if isinstance(exc, LoraGuiError):
            message = str(exc)
        else:
            message = (f"Something went wrong: {exc_type.__name__}: {exc}\n\n"
                       "The window keeps running. The details below help a bug report.")
        if _relay is not None:
            _relay.raised.emit(message, details)

    sys.excepthook = hook
    threading.excepthook = lambda args: hook(args.exc_type, args.exc_value, args.exc_traceback)


def confirm_close_while_training(parent: QWidget | None, stopping: bool) -> bool:
    """Ask whether to close the window during a run (``stopping``: it is already
    finishing its step, and closing now kills it)."""
    if stopping:
        return ask_yes_no(parent, "Training is stopping",
                          "Training is finishing its current step. Quit now without "
                          "waiting?\n\nThe checkpoint of the last finished epoch and "
                          "the best adapter are kept; the steps since are lost.")
    return ask_yes_no(parent, "Training is running",
                      "Stop training and close the window?\n\nThe best adapter "
                      "so far is kept in the run folder, and the run can be "
                      "resumed later.")
