"""The export dialog's bioimage.io choice: authors asked for once, the package written by
the export worker from the run's adapter, its test image a validation image of the run."""

from __future__ import annotations

import zipfile

import pytest

from loragui.engine.events import RunFinished
from tests.gui.helpers import wait_idle

pytest.importorskip("bioimageio.spec", reason='the bioimageio extra is not installed '
                                              '(pip install "loragui[bioimageio]")')
pytest.importorskip("onnx", reason="the onnx extra is not installed")


def test_the_dialog_offers_a_package_only_with_named_authors(qtbot):
    from loragui.gui.exportdialog import ExportDialog

    dialog = ExportDialog(None, choice="bioimageio", license="CC-BY-4.0")
    qtbot.addWidget(dialog)
    assert "bioimageio" in dialog.available() and dialog.choice() == "bioimageio"
    assert dialog.authors.isEnabled()
    dialog.accept()  # no author yet: the dialog stays, and says why
    assert dialog.result() != ExportDialog.DialogCode.Accepted
    assert not dialog.problem.isHidden() and "authors" in dialog.problem.text()
    dialog.authors.setText("Ada Lovelace,  Grace Hopper ,")
    dialog.accept()
    assert dialog.result() == ExportDialog.DialogCode.Accepted
    assert dialog.package_authors() == ["Ada Lovelace", "Grace Hopper"]
    assert dialog.package_license() == "CC-BY-4.0"
    dialog.select("peft")
    assert not dialog.authors.isEnabled()


def test_a_missing_library_greys_the_package_choice(qtbot):
    from loragui.gui.exportdialog import ExportDialog

    dialog = ExportDialog(None, bioimageio_reason='install it with: pip install '
                                                  '"loragui[bioimageio]"', choice="bioimageio")
    qtbot.addWidget(dialog)
    assert "bioimageio" not in dialog.available() and dialog.choice() == "peft"
    assert "loragui[bioimageio]" in dialog.buttons["bioimageio"].toolTip()


def test_the_window_writes_a_valid_package_in_the_export_worker(qtbot, window, dialogs,
                                                                tmp_path):
    from bioimageio.spec import load_model_description

    from loragui.engine.train import run_training
    from tests.tiny import tiny_config

    config = tiny_config(tmp_path)
    finished = next(e for e in run_training(config) if isinstance(e, RunFinished))
    wait_idle(qtbot, window)
    window.outputs.set_run(finished, config)
    window.outputs.prefs.package_authors = ["Ada Lovelace"]
    dialogs.export_choice = "bioimageio"
    dialogs.save_path = str(tmp_path / "mine")  # the suffix is added
    window.outputs.export_adapter_dialog()
    dest = tmp_path / "mine.zip"
    qtbot.waitUntil(dest.exists, timeout=240000)
    wait_idle(qtbot, window, timeout=60000)
    assert not dialogs.messages, dialogs.messages
    descr = load_model_description(dest, perform_io_checks=True)
    assert [a.name for a in descr.authors] == ["Ada Lovelace"]
    assert descr.config.model_dump()["loragui"]["adapter"]["dataset"]["fingerprint"]
    with zipfile.ZipFile(dest) as z:
        assert "cover.png" in z.namelist()
    assert window.outputs.prefs.export_kind == "bioimageio"
