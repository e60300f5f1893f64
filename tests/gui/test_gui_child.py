"""The window's link to its training child process: JSON lines back into events,
previews as .npz files, the settings file with explicit options winning, the
command for a frozen build; warnings standing out; the export dialog's choices;
preferences written atomically without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from loragui.engine.config import TrainConfig
from loragui.engine.events import (
    EpochEvent,
    LogEvent,
    Preview,
    ProgressEvent,
    RunFailed,
    RunFinished,
    RunStarted,
    StepEvent,
    event_from_dict,
    event_to_dict,
    read_previews,
    write_previews,
)
from tests.gui.helpers import wait_idle

ROOT = Path(__file__).resolve().parents[2]


def _previews() -> list[Preview]:
    """Two sizes (validation images need not match); the first counts its objects, as a
    run of objects does, the second none (as other runs, and earlier files)."""
    rng = np.random.default_rng(0)
    return [Preview(f"näme {i}", rng.integers(0, 255, (8 + i, 6, 3), dtype=np.uint8),
                    rng.random((8 + i, 6)) > 0.5, rng.random((8 + i, 6)).astype(np.float32),
                    predicted_objects=23 if i == 0 else None,
                    true_objects=25 if i == 0 else None)
            for i in range(2)]


def test_events_survive_a_json_line():
    events = [
        RunStarted("/r", "cpu", 4, 2, 3, 5, 15, 0, 10, 100, "lora", {"rank": 4}),
        StepEvent(1, 15, 1, 0.5, 1e-3, 12.5, 30.0),
        EpochEvent(1, 3, 5, 0.4, 0.3, 0.7, 0.6, 0.7, 0.6, 1, 0.7, True, seconds=1.5,
                   elapsed=12.5, previews_file="/r/previews/epoch_0001.npz"),
        LogEvent("batch reduced", "warning"),
        RunFinished("/r", "/r/adapter", 1, 0.7, 0.2, 15, 9.0, stopped=True),
        RunFinished("/r", "/r/adapter", 1, 0.7, 0.2, 15, 9.0, reason="no improvement for 3 "
                    "validations; best Dice 0.700 at epoch 1", early_stopped=True),
        RunFailed("bad", "details", "/r", None),
        ProgressEvent(1, 2, "x"),
    ]
    for event in events:
        line = json.dumps(event_to_dict(event))
        assert event_from_dict(json.loads(line)) == event
    # Newer writers may add fields; unknown or malformed events are refused.
    assert event_from_dict({"event": "LogEvent", "message": "m", "new_field": 1}) == LogEvent("m")
    for bad in ({"event": "Nope"}, {"event": "StepEvent", "step": 1}, ["StepEvent"]):
        with pytest.raises(ValueError):
            event_from_dict(bad)
    # Previews inline (as event_to_dict writes them) come back as arrays.
    inline = EpochEvent(0, 3, 0, None, 0.3, 0.1, 0.1, 0.1, 0.1, 0, None, False, _previews())
    back = event_from_dict(json.loads(json.dumps(event_to_dict(inline))))
    assert back.previews[1].image.dtype == np.uint8 and back.previews[1].mask.dtype == bool
    assert np.array_equal(back.previews[1].prediction, inline.previews[1].prediction)
    assert [(p.predicted_objects, p.true_objects) for p in back.previews] == \
        [(23, 25), (None, None)]


def test_previews_file_holds_plain_arrays(tmp_path):
    previews = _previews()
    path = write_previews(tmp_path / "previews" / "epoch_0003.npz", previews)
    assert sorted(p.name for p in path.parent.iterdir()) == ["epoch_0003.npz"]  # no temporaries
    with np.load(path, allow_pickle=False) as data:  # no object arrays: nothing to unpickle
        assert all(data[k].dtype != object for k in data.files)
    back = read_previews(path)
    assert [p.name for p in back] == ["näme 0", "näme 1"]
    for a, b in zip(back, previews, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert np.array_equal(a.prediction, b.prediction)
        assert (a.predicted_objects, a.true_objects) == (b.predicted_objects, b.true_objects)
    assert back[0].predicted_objects == 23 and type(back[0].predicted_objects) is int


def test_config_file_with_options_that_win(tmp_path, dataset, tiny_base, capsys):
    """--config FILE gives the settings; options given on the command line override it,
    even when they equal the option's default."""
    from loragui.cli import main

    images, masks = dataset
    config = TrainConfig(images=str(images), masks=str(masks), base=str(tiny_base), rank=8,
                         alpha=16, epochs=1, steps_per_epoch=1, batch_size=2, crop_size=32,
                         device="cpu", previews=1, weight_decay=0.5)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    out = tmp_path / "run"
    code = main(["train", "--config", str(path), "--out", str(out), "--rank", "4",
                 "--events", "jsonl"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and lines[-1]["event"] == "RunFinished"
    used = json.loads((out / "run.json").read_text())["config"]
    assert used["rank"] == 4  # given (the default value): wins over the file's 8
    assert used["alpha"] == 16 and used["weight_decay"] == 0.5 and used["previews"] == 1
    epochs = [d for d in lines if d["event"] == "EpochEvent"]
    assert all(Path(d["previews_file"]).is_file() and d["previews"] == [] for d in epochs)
    assert len(read_previews(epochs[-1]["previews_file"])) == 1

    path.write_text(json.dumps({"rank": "four"}))
    assert main(["train", "--config", str(path), "--out", str(out)]) == 2
    assert "rank must be a whole number, not \"four\"" in capsys.readouterr().err


def test_child_command_plain_and_frozen(monkeypatch, tmp_path):
    from loragui.gui.child import child_environment, train_command

    cmd = train_command(tmp_path / "config.json", tmp_path, resume=True)
    assert cmd[:4] == [sys.executable, "-m", "loragui", "train"]
    assert cmd[-1] == "--resume" and cmd[cmd.index("--events") + 1] == "jsonl"
    assert str(ROOT) in child_environment()["PYTHONPATH"].split(os.pathsep)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    cmd = train_command(tmp_path / "config.json", tmp_path)
    assert cmd[:2] == [sys.executable, "train"] and "--resume" not in cmd
    assert "--config" in cmd and "--events" in cmd


def test_only_a_cpu_training_is_niced(monkeypatch):
    import torch

    from loragui.gui.child import trains_on_cpu

    assert trains_on_cpu("cpu") and trains_on_cpu(" CPU ")
    assert not trains_on_cpu("cuda:0") and not trains_on_cpu("mps") and not trains_on_cpu("all")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert trains_on_cpu("auto") and trains_on_cpu(None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not trains_on_cpu("auto")


def test_warnings_stand_out_in_the_log_and_status_bar(qtbot, window, dataset, tiny_base):
    from tests.gui.test_gui_training import prepare, wait_result

    prepare(qtbot, window, dataset, tiny_base)

    def with_warnings(config, stop):
        yield RunStarted(config.out, "cpu", 4, 2, 1, 1, 1, 0, 10, 100, "lora")
        yield LogEvent("CUDA ran out of memory at step 3 with a batch of 8; retrying with a "
                       "batch of 4", "warning")
        yield LogEvent("step 5: the loss was nan; halved the learning rate", "warning")
        yield RunFinished(config.out, "", 1, 0.8, 0.1, 1, 0.1)

    window.run_training = with_warnings
    window.start_training()
    wait_result(qtbot, window)
    fmt = window.log_view.line_format("ran out of memory")
    assert fmt is not None and fmt.fontWeight() > 400
    assert fmt.foreground().color().name() not in ("#000000", "#ffffff")
    assert window.log_view.line_format("Starting:").fontWeight() <= 400
    label = window.warning_label
    assert label.isVisible() and "halved the learning rate" in label.text()
    assert "+1 more" in label.text() and "ran out of memory" in label.toolTip()
    window.start_training()  # a new run starts with a clean slate
    wait_result(qtbot, window)
    assert "+1 more" in window.warning_label.text()  # only this run's two warnings
    wait_idle(qtbot, window)


def test_export_dialog_greys_onnx_when_it_cannot_be_imported(qtbot, window, dialogs,
                                                             monkeypatch):
    from loragui.gui import outputs
    from loragui.gui.exportdialog import ExportDialog

    dialog = ExportDialog(None, onnx_reason="No module named 'onnx'", choice="onnx")
    qtbot.addWidget(dialog)
    assert not dialog.buttons["onnx"].isEnabled() and dialog.choice() == "peft"
    assert "onnx" in dialog.buttons["onnx"].toolTip()
    assert dialog.available() == ["peft", "single", "peft_compatible"]

    window.outputs.set_run(RunFinished("/r", "/r/adapter", 1, 0.7, 0.2, 15, 9.0), None)
    monkeypatch.setattr(outputs, "onnx_unavailable_reason", lambda: "not installed")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    dialogs.export_choice = None  # Cancel
    window.outputs.export_adapter_dialog()
    assert dialogs.export_offered == [["peft", "single", "peft_compatible"]]
    wait_idle(qtbot, window)


def test_preferences_are_saved_atomically_without_torch(tmp_path, monkeypatch):
    code = ("import sys\n"
            "from loragui.gui.prefs import Preferences\n"
            "p = Preferences(images_dir='x')\n"
            "p.save()\n"
            "print('torch' in sys.modules, Preferences.load().images_dir)\n")
    env = dict(os.environ, LORAGUI_CONFIG_DIR=str(tmp_path / "cfg"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "x"]
    assert sorted(p.name for p in (tmp_path / "cfg").iterdir()) == ["settings.json"]
    # An unwritable folder is not an error.
    from loragui.gui import prefs

    (tmp_path / "file").write_text("")
    monkeypatch.setattr(prefs.Preferences, "path",
                        classmethod(lambda cls: tmp_path / "file" / "settings.json"))
    prefs.Preferences().save()


def test_a_stop_after_the_result_does_not_kill_the_ending_child(qtbot, tmp_path, monkeypatch):
    import queue

    from loragui.engine.events import event_to_line
    from loragui.gui import child

    # A child that reports its result, then takes a moment to exit (as a run writing its
    # last files and unloading torch does), with Python's own Ctrl-C handling by then.
    line = event_to_line(RunFinished(str(tmp_path), "", 1, 0.7, 0.2, 15, 9.0))
    script = f"import sys, time; print({line!r}, flush=True); time.sleep(3)"
    monkeypatch.setattr(child, "train_command", lambda *a, **k: [sys.executable, "-c", script])
    events: queue.Queue = queue.Queue()
    worker = child.ProcessTrainWorker(TrainConfig(out=str(tmp_path / "run")), events)
    worker.start()
    qtbot.waitUntil(lambda: not events.empty(), timeout=20000)
    assert isinstance(events.get(), RunFinished)
    worker.cancel()  # Stop pressed as the result arrives
    assert worker.wait(20000)
    assert worker.returncode == 0
