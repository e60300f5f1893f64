"""``loragui --self-test``: open the window, load the bundled sample, train a few
CPU steps, check that curves, previews and an adapter appeared, and exit.

Everything is driven by a timer on the GUI thread (nothing here blocks it); the
run goes to a temporary folder that is removed afterwards. The window reads and
writes its preferences in a temporary place too (:func:`private_user_dirs`): a
self-test leaves the user's preferences, geometry and runs as they were.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer

TIMEOUT_S = 300


def private_user_dirs() -> Path:
    """Point the preferences and the runs (prefs.config_dir, prefs.data_dir) at a new
    temporary folder, before the window reads them; the folder, to remove afterwards."""
    root = Path(tempfile.mkdtemp(prefix="loragui-self-test-home-"))
    os.environ["LORAGUI_CONFIG_DIR"] = str(root / "config")
    os.environ["LORAGUI_DATA_DIR"] = str(root / "data")
    return root


class SelfTest:
    def __init__(self, app, window, say: Callable[[str], None] = print,
                 user_dirs: Path | None = None) -> None:
        self.app, self.window, self.say = app, window, say
        self.user_dirs = user_dirs  # private_user_dirs()'s folder, removed at the end
        self.code = 1
        self.tmp = Path(tempfile.mkdtemp(prefix="loragui-self-test-"))
        self.deadline = time.monotonic() + TIMEOUT_S
        self.steps = iter([self._wait_start_up, self._load, self._wait_data, self._train,
                           self._wait_training])
        self.step = next(self.steps)
        self.timer = QTimer()
        self.timer.setInterval(50)
        self.timer.timeout.connect(self._tick)

    def run(self) -> int:
        self.say("self-test: window shown" if self.window.isVisible() else
                 "self-test: the window did not show")
        self.timer.start()
        # An event loop of its own, ended at the close: quitting the application's loop
        # would also stop the delivery of later threads' signals in this process.
        self.loop = QEventLoop()
        self.loop.exec()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.user_dirs is not None:
            shutil.rmtree(self.user_dirs, ignore_errors=True)
        return self.code

    def _finish(self, ok: bool, message: str) -> None:
        self.say(f"self-test: {'OK' if ok else 'FAILED'}: {message}")
        self.code = 0 if ok else 1
        self.timer.stop()
        if self.window.training():
            self.window.stop_training()
        QTimer.singleShot(0, self._close)

    def _close(self) -> None:
        if self.window.training():
            QTimer.singleShot(100, self._close)
            return
        self.window.close()
        self.loop.quit()

    def _tick(self) -> None:
        if self.step is None:
            return
        if time.monotonic() > self.deadline:
            self._finish(False, f"timed out in {self.step.__name__}")
            return
        try:
            if self.step():
                self.step = next(self.steps, None)
                if self.step is None:
                    return
        except Exception as exc:  # noqa: BLE001 - reported as a failed self-test
            self._finish(False, f"{type(exc).__name__}: {exc}")

    # -- the steps: each returns True when done -------------------------------------------
    def _wait_start_up(self) -> bool:
        return self.window.bundled_known

    def _load(self) -> bool:
        w = self.window
        if w.sample_dirs is None:
            self._finish(False, "no sample data is bundled with this installation")
            return False
        w.open_sample_data()
        return True

    def _wait_data(self) -> bool:
        w = self.window
        if w.data.scanning or w.data.report is None or w.starting_up():
            return False
        if w.train_blocker():
            self._finish(False, w.train_blocker())
            return False
        return True

    def _train(self) -> bool:
        w = self.window
        w.settings.set_values({"device": "cpu", "epochs": 1, "crop_size": 64, "batch_size": 2})
        w.config_overrides = {"steps_per_epoch": 3, "previews": 2, "out": str(self.tmp / "run")}
        w.start_training()
        return True

    def _wait_training(self) -> bool:
        from loragui.engine.events import RunFinished

        w = self.window
        if w.training() or w.result is None:
            return False
        result = w.result
        if not isinstance(result, RunFinished):
            self._finish(False, f"training failed: {result.message}")
        elif not Path(result.output).exists():
            self._finish(False, f"no adapter was written ({result.output})")
        elif not w.training_view.curves.steps.n or not w.training_view.previews.images:
            self._finish(False, "the curves or previews stayed empty")
        else:
            self._finish(True, f"trained {result.steps} steps on the CPU; validation Dice "
                         f"{result.base_dice or 0:.3f} -> {result.best_dice or 0:.3f}")
        return True
