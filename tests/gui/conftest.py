"""Fixtures for the window tests: offscreen Qt, settings in tmp_path, no dialog
ever blocks (message boxes, file dialogs and the export dialog are intercepted),
no thread or training child process is left running, and tiny generated data sets."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt is imported

import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.gui.helpers import make_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def user_dirs(tmp_path, monkeypatch):
    """Preferences, window geometry and runs all go under tmp_path."""
    monkeypatch.setenv("LORAGUI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("LORAGUI_DATA_DIR", str(tmp_path / "userdata"))
    return tmp_path


@pytest.fixture(autouse=True)
def collection_given_back():
    """Automatic collection, which a window's first worker moves to the GUI thread, is
    CPython's again after each test: the other tests run no event loop to collect."""
    yield
    from loragui.gui.collector import collect_anywhere

    collect_anywhere()


@pytest.fixture(autouse=True)
def no_thread_leaks():
    """Fail a test that leaves a QThread worker, a Python thread or a training child
    process running.

    Autouse and independent of qtbot, so it is set up before qtbot and torn down
    after pytest-qt has closed the test's widgets (whose closeEvent joins threads).
    The worker threads are known from the outside: ``WorkerWatch`` records each one
    started during the test, and the training processes those started.
    """
    from tests.gui.watch import WorkerWatch

    before = {t.ident for t in threading.enumerate()}
    with WorkerWatch() as watch:
        yield

    def leaks() -> list[str]:
        names = [f"QThread {type(w).__name__}" for w in watch.running()]
        names += [f"child process {p.pid}: {' '.join(map(str, p.args))}"
                  for p in watch.processes()]
        names += [f"thread {t.name}" for t in threading.enumerate()
                  if t.ident not in before and t.is_alive()
                  and not isinstance(t, threading._DummyThread)]  # noqa: SLF001
        return names

    leaked = leaks()
    if leaked:
        # Wait for them anyway, so one leak does not break the following tests.
        deadline = time.monotonic() + 30
        for p in watch.processes():
            p.kill()
        for w in watch.running():
            w.cancel()
            w.wait(max(0, int(1000 * (deadline - time.monotonic()))))
        pytest.fail(f"threads left running after the test: {leaked}")


@dataclass
class Dialogs:
    """What the intercepted dialogs showed, and what they should answer."""

    messages: list[tuple[str, str, str]] = field(default_factory=list)  # title, text, details
    questions: list[str] = field(default_factory=list)
    answer_yes: bool = True
    save_path: str = ""
    save_filter: str = ""
    folders: list[str] = field(default_factory=list)  # answers of getExistingDirectory, in order
    export_choice: str | None = "peft"  # the export dialog's answer (None: Cancel)
    export_offered: list[list[str]] = field(default_factory=list)  # its enabled choices

    def texts(self) -> list[str]:
        return [text for _, text, _ in self.messages]


@pytest.fixture(autouse=True)
def dialogs(monkeypatch) -> Dialogs:
    from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox

    from loragui.gui.exportdialog import ExportDialog

    record = Dialogs()

    def fake_export_exec(dialog):
        record.export_offered.append(dialog.available())
        if record.export_choice is None:
            return QDialog.DialogCode.Rejected
        assert record.export_choice in dialog.available(), record.export_choice
        dialog.select(record.export_choice)
        return QDialog.DialogCode.Accepted

    def fake_exec(box):
        record.messages.append((box.windowTitle(), box.text(), box.detailedText()))
        return QMessageBox.StandardButton.Ok

    def fake_question(parent, title, text, *args, **kwargs):
        record.questions.append(text)
        return QMessageBox.StandardButton.Yes if record.answer_yes else QMessageBox.StandardButton.No

    def fake_existing(*args, **kwargs):
        return record.folders.pop(0) if record.folders else ""

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    monkeypatch.setattr(ExportDialog, "exec", fake_export_exec)
    monkeypatch.setattr(QMessageBox, "question", staticmethod(fake_question))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(fake_existing))
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (record.save_path, record.save_filter)))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: ("", "")))
    return record


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, Path]:
    return make_dataset(tmp_path / "blobs")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny random base model (width 4, depth 2): a training step takes milliseconds."""
    import torch

    from loragui.engine.basemodel import save_model
    from loragui.engine.preprocessing import Preprocessing
    from loragui.engine.unet import UNet, UNetConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base") / "tiny-base.safetensors"
    return save_model(UNet(UNetConfig(width=4, depth=2)), path,
                      preprocessing=Preprocessing().to_dict())


def _shown_window(qtbot, base):
    from loragui.gui.window import MainWindow

    win = MainWindow()
    win.settings.set_base(str(base))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win


@pytest.fixture
def window(qtbot, tiny_base):
    """The real main window (background start-up included), shown offscreen, with
    the tiny base model chosen (this checkout may have no bundled one)."""
    return _shown_window(qtbot, tiny_base)


@pytest.fixture
def window_with_sample(qtbot, tiny_base, dataset, monkeypatch):
    """The real main window, with ``dataset`` as the bundled sample data (the engine's
    bundled-files lookup answers it, as an installation that ships a sample would)."""
    from loragui.engine import resources

    monkeypatch.setattr(resources, "bundled_sample_dirs", lambda: dataset)
    return _shown_window(qtbot, tiny_base)
