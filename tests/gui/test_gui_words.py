"""What the window's words say: the export choices, the log's figures."""

from __future__ import annotations


def test_export_choices_are_named_by_what_they_are(qtbot):
    from loragui.gui.exportdialog import ExportDialog

    dialog = ExportDialog(peft_note="not loadable by PEFT as is")
    qtbot.addWidget(dialog)
    names = {kind: button.text() for kind, button in dialog.buttons.items()}
    # Only the copy PEFT always loads is called a PEFT one (the header may say the
    # adapter as trained is not).
    assert [kind for kind, name in names.items() if "PEFT" in name] == ["peft_compatible"]
    assert names["peft"] == "Adapter folder, as trained"


def test_open_run_folder_without_a_file_manager_says_where_it_is(qtbot, window, dialogs,
                                                                  monkeypatch, tmp_path):
    from PySide6.QtGui import QDesktopServices

    from loragui.engine.events import RunFinished
    from tests.gui.watch import WorkerWatch

    qtbot.waitUntil(lambda: not WorkerWatch.current.running(), timeout=20000)
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl",
                        staticmethod(lambda url: opened.append(url.toLocalFile()) or False))
    run = tmp_path / "runs" / "2026-01-01_10-00-00"
    run.mkdir(parents=True)
    window.outputs.set_run(RunFinished(run_dir=str(run), output="", best_epoch=0, best_dice=None,
                                       base_dice=None, steps=0, seconds=0.0), None)
    window.results.open_button.click()
    assert opened == [str(run)]
    assert [t for t in dialogs.texts() if "No file manager" in t and str(run) in t], dialogs.messages
