"""The window's menus and shortcuts, and its saved geometry (QSettings is used
for geometry and dock state only; preferences live in settings.json)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence

from . import dialogs
from .prefs import GEOMETRY_FILE, config_dir


def _action(window, menu, text: str, slot, shortcut=None) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    action.triggered.connect(slot)
    menu.addAction(action)
    return action


def build_menus(w) -> None:
    """File, Run, View and Help; the actions are kept on the window (``w.train_action``…)."""
    bar = w.menuBar()
    file = bar.addMenu("&File")
    w.open_action = _action(w, file, "Open &images folder…", w.data.images_zone.browse,
                            QKeySequence.StandardKey.Open)
    _action(w, file, "Open &masks folder…", w.data.masks_zone.browse)
    w.sample_action = _action(w, file, "Open &sample data", w.open_sample_data)
    w.sample_action.setEnabled(False)
    last = (Path(w.prefs.images_dir), Path(w.prefs.masks_dir)) if (
        w.prefs.images_dir and w.prefs.masks_dir) else None
    name = (last[0].parent.name if last[0].name.lower() == "images" else last[0].name) if last \
        else "the last data"
    w.reopen_action = _action(w, file, f"&Reopen {name}",
                              lambda: last and w.load_folders(*last))
    w.reopen_action.setEnabled(last is not None and all(p.is_dir() for p in last))
    if last:
        w.reopen_action.setStatusTip(f"{last[0]} + {last[1]}")
    file.addSeparator()
    w.export_action = _action(w, file, "&Export adapter…", w.outputs.export_adapter_dialog,
                              "Ctrl+E")
    w.merged_action = _action(w, file, "Export &merged model…", w.outputs.export_merged_dialog)
    w.predict_action = _action(w, file, "&Predict folder…", w.outputs.predict_folder_dialog)
    file.addSeparator()
    _action(w, file, "&Quit", w.close, QKeySequence.StandardKey.Quit)
    run = bar.addMenu("&Run")
    w.train_action = _action(w, run, "&Train", w.start_training, "Ctrl+Return")
    w.train_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
    w.stop_action = _action(w, run, "&Stop", w.stop_training, "Esc")
    run.addSeparator()
    w.resume_action = _action(w, run, "&Resume a run…", w.resume_offer.choose_run)
    w.resume_action.setStatusTip("Continue an interrupted run from its checkpoint")
    run.addSeparator()
    w.review_action = _action(w, run, "Re&view…", w.reviewing.review_current, "Ctrl+R")
    w.review_action.setStatusTip("Each image with the model's prediction; correct the masks")
    w.review_adapter_action = _action(w, run, "Review with an &adapter…",
                                      w.reviewing.review_with_adapter)
    view = bar.addMenu("&View")
    view.addAction(w.log_dock.toggleViewAction())
    view.addAction(w.runs_dock.toggleViewAction())
    help_menu = bar.addMenu("&Help")
    w.about_action = _action(w, help_menu, "&About loragui", lambda: dialogs.show_about(w, w.info))


SCREEN_SHARE = 0.95  # of the available screen a window may take when it opens


def fit_to_screen(w, size) -> None:
    """Resize ``w`` to ``size`` (a QSize or (width, height)), at most the available
    geometry of its screen, and keep it on that screen."""
    width, height = (size.width(), size.height()) if hasattr(size, "width") else size
    screen = w.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        w.resize(width, height)
        return
    room = screen.availableGeometry()
    width = min(width, int(room.width() * SCREEN_SHARE))
    height = min(height, int(room.height() * SCREEN_SHARE))
    w.resize(width, height)
    frame = w.frameGeometry()
    if not room.contains(frame):
        x = min(max(frame.x(), room.x()), room.right() - frame.width())
        y = min(max(frame.y(), room.y()), room.bottom() - frame.height())
        w.move(max(x, room.x()), max(y, room.y()))


def _store() -> QSettings:
    return QSettings(str(config_dir() / GEOMETRY_FILE), QSettings.Format.IniFormat)


def save_geometry(w) -> None:
    store = _store()
    store.setValue("geometry", w.saveGeometry())
    store.setValue("state", w.saveState())
    store.setValue("splitter", w.splitter.saveState())


def restore_geometry(w) -> bool:
    """Restore the saved geometry; True when the splitter's sizes were restored too."""
    store = _store()
    if store.value("geometry") is not None:
        w.restoreGeometry(store.value("geometry"))
    if store.value("state") is not None:
        w.restoreState(store.value("state"))
    return store.value("splitter") is not None and w.splitter.restoreState(store.value("splitter"))
