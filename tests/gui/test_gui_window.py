"""Start-up, settings, preferences, About, the exception hook, themes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from loragui.engine.config import TrainConfig
from tests.gui.helpers import wait_idle

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_window_shows_before_torch_is_imported():
    """Launch → visible window, without torch (nor pyqtgraph): they load after the first
    paint. (``loragui --startup-time`` reports how long it takes.)"""
    code = ("import sys\n"
            "from loragui.gui import app, window\n"
            "def probe():\n"
            "    print('MODULES', 'torch' in sys.modules, 'pyqtgraph' in sys.modules, flush=True)\n"
            "window.MainWindow.showEvent = (lambda old: lambda self, e: (old(self, e), probe()))("
            "window.MainWindow.showEvent)\n"
            "sys.exit(app.main(['--startup-time', '--quit-after-show']))\n")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    early = []
    for line in proc.stdout:  # "window shown" is printed once the window has been shown
        if line.startswith("window shown after"):
            break
        early.append(line.strip())
    shown = line.strip()
    out = proc.stdout.read()  # (communicate() would skip what the loop has buffered)
    err = proc.stderr.read()
    proc.wait(timeout=60)
    lines = early + out.splitlines()
    assert proc.returncode == 0, err
    assert shown.startswith("window shown after"), (shown, out, err)
    assert "MODULES False False" in lines, out


def test_engine_never_imports_qt():
    proc = run_python("import sys\n"
                      "import loragui.engine.config, loragui.engine.events, loragui.engine.errors\n"
                      "import loragui.engine.pairing, loragui.engine.sampler, loragui.engine.train, loragui.engine.exports\n"
                      "import loragui.engine.predict, loragui.engine.devices\n"
                      "print([m for m in sys.modules if m.startswith(('PySide6', 'PyQt', "
                      "'pyqtgraph', 'shiboken'))])")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_settings_command_line_reset_and_preferences(qtbot, window, user_dirs):
    s = window.settings
    assert s.rank.value() == TrainConfig().rank and s.lr.value() == TrainConfig().lr
    s.rank.setValue(16)
    s.lr.lineEdit().setText("3e-4")
    s.lr.interpretText()
    assert abs(s.lr.value() - 3e-4) < 1e-12
    s.layers.setCurrentIndex(1)  # encoder only
    cmd = s.command.text()
    assert "--rank 16" in cmd and "--lr 0.0003" in cmd and "--targets 'down.*,bottleneck.*'" in cmd
    assert s.command.isReadOnly()
    s.copy_button.click()
    assert QApplication.clipboard().text() == cmd
    s.early_stop.setChecked(False)
    assert "--no-early-stop" in s.command.text()
    s.reset()
    assert s.rank.value() == TrainConfig().rank and "--rank" not in s.command.text()
    assert s.early_stop.isChecked() and "--no-early-stop" not in s.command.text()
    assert s.targets() == ["*"]
    for w in (s.rank, s.alpha, s.epochs, s.early_stop, s.batch_size, s.lr, s.crop_size, s.val_percent,
              s.layers, s.device, s.base):
        assert w.toolTip(), w

    s.rank.setValue(4)
    s.epochs.setValue(7)
    s.early_stop.setChecked(False)
    wait_idle(qtbot, window)
    window.close()
    saved = json.loads((user_dirs / "config" / "settings.json").read_text())
    assert saved["train"]["rank"] == 4 and saved["train"]["epochs"] == 7
    assert saved["train"]["early_stop"] is False
    assert (user_dirs / "config" / "window.ini").is_file()

    from loragui.gui.window import MainWindow

    again = MainWindow(background=False)
    qtbot.addWidget(again)
    assert again.settings.rank.value() == 4 and again.settings.epochs.value() == 7
    assert not again.settings.early_stop.isChecked()


def test_devices_listed_with_unavailable_ones_greyed(qtbot, window):
    qtbot.waitUntil(lambda: "devices" in window.info, timeout=30000)
    combo = window.settings.device
    model = combo.model()
    names = [combo.itemData(i) for i in range(combo.count())]
    assert names[0] == "auto" and "cpu" in names
    from loragui.engine.devices import list_devices

    for info in list_devices():
        item = model.item(names.index(info.name))
        assert item.isEnabled() == info.available
        if not info.available:
            assert info.reason in item.toolTip()
    wait_idle(qtbot, window)


def test_about_dialog_shows_versions(qtbot, window, dialogs):
    qtbot.waitUntil(lambda: "devices" in window.info, timeout=30000)
    import torch

    import loragui

    window.about_action.trigger()
    title, text, _ = dialogs.messages[-1]
    assert loragui.__version__ in text and torch.__version__ in text and "cpu" in text
    wait_idle(qtbot, window)


def test_shortcuts(window):
    from PySide6.QtGui import QKeySequence

    assert window.open_action.shortcut() == QKeySequence(QKeySequence.StandardKey.Open)
    assert window.train_action.shortcut().toString() == "Ctrl+Return"
    assert window.stop_action.shortcut().toString() == "Esc"
    assert window.export_action.shortcut().toString() == "Ctrl+E"


def test_open_images_with_ctrl_o_and_sample_link(qtbot, window_with_sample, dataset, dialogs):
    window = window_with_sample
    images, masks = dataset
    qtbot.waitUntil(lambda: window.bundled_known, timeout=30000)
    assert window.sample_action.isEnabled() and window.data.sample_link.isVisibleTo(window)
    dialogs.folders = [str(images)]
    window.open_action.trigger()  # Ctrl+O: the browse dialog of the Images zone
    qtbot.waitUntil(lambda: window.data.images_dir == images, timeout=10000)
    wait_idle(qtbot, window)
    window.data.sample_link.linkActivated.emit("sample")
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    wait_idle(qtbot, window)


def test_excepthook_shows_a_dialog(qtbot, window, dialogs, monkeypatch):
    from loragui.gui import dialogs as gui_dialogs

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr("threading.excepthook", __import__("threading").excepthook)
    monkeypatch.setattr(gui_dialogs, "_relay", None)
    gui_dialogs.install_excepthook()
    try:
        raise RuntimeError("kaboom")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    qtbot.waitUntil(lambda: bool(dialogs.messages), timeout=5000)
    title, text, details = dialogs.messages[0]
    assert "kaboom" in text and "Traceback" in details
    wait_idle(qtbot, window)


def test_plots_follow_a_dark_palette(qtbot):
    from loragui.gui.plots import TrainingCurves

    curves = TrainingCurves()
    qtbot.addWidget(curves)
    dark = QPalette()
    dark.setColor(QPalette.ColorRole.Base, QColor(30, 30, 30))
    dark.setColor(QPalette.ColorRole.Text, QColor(230, 230, 230))
    curves.setPalette(dark)
    assert curves.view.backgroundBrush().color().lightness() < 60
    axis_colour = curves.loss_plot.getAxis("left").textPen().color()
    assert axis_colour.lightness() > 180


def test_drop_zone_follows_the_palette(qtbot):
    from loragui.gui.dropzone import DropZone

    zone = DropZone("Images", "hint")
    qtbot.addWidget(zone)
    zone.resize(200, 90)
    light = zone.grab().toImage().pixelColor(100, 80)
    dark = QPalette()
    dark.setColor(QPalette.ColorRole.Base, QColor(17, 17, 17))
    dark.setColor(QPalette.ColorRole.Text, QColor(238, 238, 238))
    zone.setPalette(dark)
    assert zone.grab().toImage().pixelColor(100, 80).lightness() < 40 < light.lightness()


def test_train_waits_for_the_plots(qtbot, dataset, tiny_base, dialogs, monkeypatch):
    """Until the start-up thread has imported the plotting library and the plots are
    made, Train is disabled (made at the press, they would freeze the window); a
    failed start-up lets Train make them."""
    from loragui.gui.window import MainWindow
    from loragui.gui.workers import StartupWorker

    for ready in ("plots", "failed start-up"):
        if ready == "failed start-up":
            monkeypatch.setattr(StartupWorker, "run",
                                lambda self: self.failed.emit("no plots", "details"))
        win = MainWindow()  # not shown yet: its start-up thread has not started
        qtbot.addWidget(win)
        win.settings.set_base(str(tiny_base))
        win.load_folders(*dataset)
        qtbot.waitUntil(lambda w=win: w.data.pair_count == 6, timeout=10000)
        assert win.train_blocker() == "Starting up…" and not win.train_button.isEnabled()
        win.start_training()  # (Ctrl+Return while disabled) does nothing
        assert win.run is None
        win.show()  # the start-up thread starts after the first paint
        qtbot.waitUntil(win.train_button.isEnabled, timeout=60000)
        assert win.train_blocker() == ""
        problem = "Start-up problem: no plots" in win.log_view.toPlainText()
        assert problem == (ready == "failed start-up")
        wait_idle(qtbot, win)


def test_self_test_trains_on_the_sample(qtbot, window_with_sample):
    from loragui.engine.train import run_training
    from loragui.gui.selftest import SelfTest

    window = window_with_sample  # this checkout may bundle no sample: ours stands in
    qtbot.waitUntil(lambda: window.bundled_known, timeout=30000)
    # In a thread of this process, to keep the tests fast (the training tests cover the
    # child process that `loragui --self-test` uses).
    window.run_training = run_training
    said: list[str] = []
    code = SelfTest(QApplication.instance(), window, said.append).run()
    assert code == 0, said
    assert said[0] == "self-test: window shown" and said[-1].startswith("self-test: OK")
    assert not window.isVisible()
