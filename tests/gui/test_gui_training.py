"""Training from the window with the real engine in a child process: curves,
previews, stop, resume, close, a dying child, exports, predict; and the event
coalescing that keeps the window responsive."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog

from loragui.engine.events import (
    EpochEvent,
    Preview,
    RunFailed,
    RunFinished,
    RunStarted,
    StepEvent,
)
from loragui.gui import child
from loragui.gui.child import ProcessTrainWorker
from tests.gui.helpers import TINY_OVERRIDES, TINY_TRAINING, drop, wait_idle


def prepare(qtbot, window, dataset, tiny_base, **settings) -> None:
    window.load_folders(*dataset)
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    window.settings.set_base(str(tiny_base))
    window.settings.set_values(TINY_TRAINING | settings)
    window.config_overrides = dict(TINY_OVERRIDES)
    qtbot.waitUntil(window.train_button.isEnabled, timeout=10000)


def interrupted_run(out, dataset, tiny_base):
    """A run of 3 epochs in ``out``, stopped after its first: resumable. Its config."""
    from loragui.engine.config import TrainConfig
    from loragui.engine.train import run_training

    config = TrainConfig(images=str(dataset[0]), masks=str(dataset[1]), out=str(out),
                         base=str(tiny_base), **(TINY_TRAINING | {"epochs": 3}),
                         steps_per_epoch=2)
    stop = threading.Event()
    for event in run_training(config, stop):
        if isinstance(event, EpochEvent) and event.epoch == 1:
            stop.set()
    return config


def wait_result(qtbot, window, timeout: int = 60000):
    qtbot.waitUntil(lambda: window.result is not None and not window.training(), timeout=timeout)
    return window.result


def test_train_end_to_end_then_export_and_predict(qtbot, window, dataset, tiny_base, dialogs,
                                                  tmp_path, monkeypatch):
    prepare(qtbot, window, dataset, tiny_base)
    assert window.train_action.shortcut().toString() == "Ctrl+Return"
    assert window.training_view is not None  # Train waited for the plots (start-up thread)
    window.train_action.trigger()
    assert window.training() and window.stop_button.isEnabled()
    assert not window.settings.isEnabled() and not window.data.images_zone.isEnabled()
    # The curves replace the welcome page in the next pass of the event loop.
    qtbot.waitUntil(lambda: window.stack.currentWidget() is window.training_view, timeout=2000)
    result = wait_result(qtbot, window)
    assert window.training_view.previews.updatesEnabled()

    assert isinstance(result, RunFinished), getattr(result, "details", result)
    assert not result.stopped and Path(result.output, "adapter_config.json").is_file()
    assert not dialogs.messages
    curves = window.training_view.curves
    assert curves.steps.n == 12  # 3 epochs x 4 steps
    x, y = curves.raw_curve.getData()
    assert len(x) == 12 and np.isfinite(y).all()
    assert curves.epochs.n == 4  # epoch 0 (the base model) and 3 epochs
    assert len(curves.dice_curve.getData()[0]) == 4
    assert curves.base_dice is not None and curves.best is not None
    previews = window.training_view.previews
    assert len(previews.images) == 2 and previews.images[0].shape == (32, 32, 3)
    assert previews.epoch == 3
    assert window.results.isVisible() and "base model" in window.results.text.text()
    assert window.train_button.isEnabled() and window.export_action.isEnabled()
    log = window.log_view.toPlainText()
    assert "Epoch 3/3" in log and "validated in" in log  # (the time is the validation's)
    assert not re.search(r"\d\.\d{5,}", log), log  # numbers rounded
    # It ran in a child process, which wrote the settings and the previews into the run.
    run_dir = Path(result.run_dir)
    assert isinstance(window.run.worker, ProcessTrainWorker) and window.run.worker.returncode == 0
    assert json.loads((run_dir / "config.json").read_text())["steps_per_epoch"] == 4
    assert sorted(p.name for p in (run_dir / "previews").iterdir()) == [
        f"epoch_{e:04d}.npz" for e in range(4)]
    assert not window.resume_button.isVisible()  # a finished run has nothing to resume
    # Whether PEFT loads the adapter as it is (it adapts ConvTranspose2d layers: no).
    wait_idle(qtbot, window)
    qtbot.waitUntil(window.results.peft_label.isVisible, timeout=60000)
    assert window.results.peft_loadable is False
    assert "not loadable" in window.results.peft_label.text()

    # Export as one file, through the Ctrl+E dialog.
    from loragui.engine.adapters import load_adapter
    from loragui.engine.basemodel import load_model
    from loragui.engine.info import read_model_info

    dialogs.save_path = str(tmp_path / "exported")
    dialogs.export_choice = "single"
    assert window.export_action.shortcut().toString() == "Ctrl+E"
    window.export_action.trigger()
    single = tmp_path / "exported.safetensors"
    qtbot.waitUntil(single.is_file, timeout=10000)
    wait_idle(qtbot, window)
    assert load_adapter(single).tensors
    # the bioimage.io package where its library is installed (the bioimageio extra)
    import importlib.util

    package = {"bioimageio"} if importlib.util.find_spec("bioimageio") else set()
    assert set(dialogs.export_offered[0]) == {"peft", "single", "peft_compatible", "onnx"} | package
    # ...as a PEFT folder, as trained, and as a PEFT-loadable copy.
    window.outputs.export_adapter(tmp_path / "peft", single_file=False)
    dialogs.save_path, dialogs.export_choice = str(tmp_path / "peft-ok"), "peft_compatible"
    window.export_action.trigger()
    wait_idle(qtbot, window)
    assert load_adapter(tmp_path / "peft").tensors
    assert read_model_info(tmp_path / "peft")["peft_loadable"] is False
    assert read_model_info(tmp_path / "peft-ok")["peft_loadable"] is True
    # ONNX of the merged model.
    dialogs.save_path, dialogs.export_choice = str(tmp_path / "model"), "onnx"
    window.export_action.trigger()
    wait_idle(qtbot, window, timeout=60000)
    assert (tmp_path / "model.onnx").stat().st_size > 1000
    # A merged model.
    window.outputs.export_merged(tmp_path / "merged.safetensors")
    wait_idle(qtbot, window)
    model, _ = load_model(tmp_path / "merged.safetensors")
    assert model is not None
    # Predict a folder: the dialog proposes a new folder beside the images, which the
    # prediction makes; progress counts images; the end says how many masks, and where.
    images, _ = dataset
    proposed: list[str] = []

    def ask_save(parent, title, start, filters):
        proposed.append(start)
        return start, filters

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(ask_save))
    shown: list[str] = []
    set_predicting = window.results.set_predicting
    monkeypatch.setattr(window.results, "set_predicting", lambda *a: (
        set_predicting(*a), shown.append(window.results.predict_bar.text())))
    dialogs.folders = [str(images)]
    window.predict_action.trigger()
    wait_idle(qtbot, window)
    out = Path(proposed[0])
    assert out == images.parent / "images-masks"
    assert len(list(out.glob("*.png"))) == 6
    assert "Predicting 6 of 6" in shown[-1] and not any(" of 1" in t for t in shown), shown
    # the end is shown when the worker's last signal reaches the window, after its thread
    qtbot.waitUntil(window.results.predicted_label.isVisible, timeout=20000)
    assert "6 masks written to" in window.results.predicted_label.text()
    assert window.results.open_predicted.isVisible()
    assert not dialogs.messages

    # The output rule: a folder holding the user's file is refused, untouched ...
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_bytes(b"years of work")
    assert window.outputs.export_adapter(mine, single_file=False) is None
    assert "1 file loragui did not write (thesis.docx)" in dialogs.messages.pop()[1]
    assert [p.name for p in mine.iterdir()] == ["thesis.docx"]
    assert window.outputs.predict_folder(images, images) is None  # never over the images
    assert "is the images folder itself" in dialogs.messages.pop()[1]
    # ... and loragui's own earlier output is replaced only once the user agrees.
    merged_bytes = (tmp_path / "merged.safetensors").read_bytes()
    dialogs.answer_yes = False
    assert window.outputs.export_merged(tmp_path / "merged.safetensors") is None
    assert window.outputs.predict_folder(images, out) is None  # the masks predicted above
    assert "merged model loragui wrote earlier" in dialogs.questions[-2]
    assert "masks loragui predicted earlier" in dialogs.questions[-1]
    assert (tmp_path / "merged.safetensors").read_bytes() == merged_bytes
    dialogs.answer_yes = True
    assert window.outputs.predict_folder(images, out) is not None
    wait_idle(qtbot, window)
    assert not dialogs.messages


def test_stop_within_a_step_resume_then_close(qtbot, window, dataset, tiny_base, dialogs):
    # Crops big enough that a step takes a while: "the step under way" is then clear; and
    # steps enough that the resumed run is still training when the window is closed.
    prepare(qtbot, window, dataset, tiny_base, epochs=30, crop_size=64, batch_size=4)
    window.config_overrides |= {"steps_per_epoch": 10, "early_stop": False}
    window.start_training()
    qtbot.waitUntil(lambda: window.training_view.curves.steps.n >= 3, timeout=30000)
    if hasattr(os, "getpriority"):  # the child yields the CPU to the window's thread
        assert os.getpriority(os.PRIO_PROCESS, window.run.worker.proc.pid) >= child.CHILD_NICE
    window.stop_action.trigger()  # Esc
    step_at_stop = window.run.worker.last_step
    assert window.stop_action.shortcut().toString() == "Esc"
    assert not window.stop_button.isEnabled()
    result = wait_result(qtbot, window, timeout=20000)
    assert isinstance(result, RunFinished) and result.stopped
    # The step under way finishes, no more (one more may have been in the pipe).
    assert step_at_stop <= result.steps <= step_at_stop + 2
    assert window.run.worker.returncode == 0  # it stopped by itself, it was not killed
    assert Path(result.output, "adapter_config.json").is_file()
    assert "stopped" in window.results.text.text().lower()
    assert not dialogs.messages
    # The log says how to continue in the window's words (not the command line's).
    qtbot.waitUntil(lambda: "press Resume" in window.log_view.toPlainText(), timeout=20000)
    assert "--resume" not in window.log_view.toPlainText()

    # Resume is offered, and continues the run from the step it stopped at.
    qtbot.waitUntil(window.resume_button.isVisible, timeout=20000)
    assert window.resume_button.text() == f"Resume (step {result.steps} of 300)"
    base_dice = window.training_view.curves.base_dice
    assert base_dice is not None
    window.resume_button.click()
    assert window.training() and not window.resume_button.isVisible()
    curves, previews = window.training_view.curves, window.training_view.previews
    # the earlier epochs' ends come back from metrics.csv (when the stop came after an
    # epoch ended); the resumed run's own steps start after the stop
    qtbot.waitUntil(lambda: (curves.steps.view()[:, 0] > result.steps).sum() >= 2,
                    timeout=30000)
    shown = curves.steps.view()[:, 0]
    assert (shown[shown <= result.steps] % 10 == 0).all()  # only epoch ends restored
    assert shown[shown > result.steps][0] == result.steps + 1
    # What the run had done before is back, from its files: the base model's epoch (its
    # line in the Dice plot) and its predictions.
    assert curves.epochs.view()[0, 0] == 0 and curves.base_dice == pytest.approx(base_dice, abs=1e-3)
    assert curves.base_line.isVisible()
    # the newest previews the run saved: the base model's, or an epoch's it finished
    assert previews.epoch in (0, result.steps // 10) and len(previews.names) == 2
    assert f"resumed from step {result.steps}" in window.log_view.toPlainText()

    # Closing the window while it trains asks, stops the child after its step, then closes.
    dialogs.answer_yes = False
    window.close()
    assert window.isVisible() and window.training() and len(dialogs.questions) == 1
    dialogs.answer_yes = True
    window.close()
    assert len(dialogs.questions) == 2
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=20000)
    assert not window.run.is_running() and window.run.worker.returncode == 0
    assert isinstance(window.result, RunFinished) and window.result.stopped
    assert result.steps < window.result.steps < 300
    assert not dialogs.messages


def test_a_dying_child_fails_clearly_and_offers_resume(qtbot, window, dataset, tiny_base,
                                                      dialogs):
    prepare(qtbot, window, dataset, tiny_base, epochs=50)
    window.config_overrides["steps_per_epoch"] = 5
    window.start_training()
    qtbot.waitUntil(lambda: window.training_view.curves.epochs.n >= 2, timeout=30000)
    window.run.worker.proc.kill()  # as the out-of-memory killer would
    result = wait_result(qtbot, window)
    assert isinstance(result, RunFailed)
    assert "ended unexpectedly (killed by SIGKILL)" in result.message
    assert "Resume" in result.message and result.output
    assert not dialogs.messages  # the run column says it, once
    assert "ended unexpectedly" in window.results.text.text()
    assert "--events jsonl" in window.results.text.toolTip()
    assert "--events jsonl" in window.log_view.toPlainText()
    qtbot.waitUntil(window.resume_button.isVisible, timeout=20000)
    assert window.resume_button.text().startswith("Resume (step ")
    assert window.train_button.isEnabled()

    # Resumed, the run's finished epochs are back from its files before any new one.
    done = [int(e) for e in window.training_view.curves.epochs.view()[:, 0]]
    assert done[:2] == [0, 1]
    window.resume_button.click()
    curves, previews = window.training_view.curves, window.training_view.previews
    qtbot.waitUntil(lambda: window.run.info is not None and curves.epochs.n >= len(done) - 1,
                    timeout=30000)
    shown = [int(e) for e in curves.epochs.view()[:, 0]]
    assert shown[:len(done) - 1] == done[:len(done) - 1]  # (the last may not be in metrics.csv)
    assert curves.base_line.isVisible() and previews.epoch >= 1
    window.stop_training()
    wait_result(qtbot, window)


def test_the_last_interrupted_run_is_offered_at_start(qtbot, tiny_base, dataset, user_dirs):
    from loragui.gui.window import MainWindow

    run = user_dirs / "userdata" / "runs" / "2020-01-01_00-00-00"
    interrupted_run(run, dataset, tiny_base)

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(win.resume_button.isVisible, timeout=30000)
    assert win.resume_button.text() == "Resume (step 2 of 6)"
    assert "can be continued" in win.log_view.toPlainText()
    wait_idle(qtbot, win)


def test_drop_on_the_window_outside_the_zones(qtbot, window, dataset):
    drop(window, [dataset[0].parent])  # a folder holding images/ and masks/
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    wait_idle(qtbot, window)


def fake_events(n_steps: int, epochs: int = 2):
    """A fake run_training producing many steps quickly (to test the coalescing)."""
    rng = np.random.default_rng(0)
    preview = Preview("p", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
                      rng.random((16, 16)) > 0.5, rng.random((16, 16)).astype(np.float32))

    def run_training(config, stop):
        yield RunStarted(config.out, "cpu", 4, 2, epochs, n_steps // epochs, n_steps, 0, 10, 100,
                         "lora")
        yield EpochEvent(0, epochs, 0, None, 0.9, 0.1, 0.05, 0.1, 0.05, 0, 0.1, True, [preview])
        for step in range(1, n_steps + 1):
            if stop.is_set():
                break
            yield StepEvent(step, n_steps, 1 + (step - 1) * epochs // n_steps,
                            1.0 / step, 1e-3, 100.0, 1.0)
            if step % (n_steps // epochs) == 0:
                e = step * epochs // n_steps
                yield EpochEvent(e, epochs, step, 0.5, 0.4, 0.5 + 0.1 * e, 0.4, 0.5, 0.4, e,
                                 0.5 + 0.1 * e, True, [preview])
        yield RunFinished(config.out, "", epochs, 0.7, 0.1, n_steps, 1.0, stop.is_set())

    return run_training


def test_fast_event_stream_is_coalesced(qtbot, window, dataset, tiny_base, dialogs):
    prepare(qtbot, window, dataset, tiny_base)
    window.run_training = fake_events(20000)
    window.start_training()
    result = wait_result(qtbot, window)
    assert isinstance(result, RunFinished)
    assert window.training_view.curves.steps.n == 20000
    assert window.run.drains < 2000  # 20,000 steps were drawn in far fewer redraws
    # The fake wrote no adapter: nothing to export.
    assert not window.export_action.isEnabled()
    # The preferences keep the run, to show it after a restart.
    assert window.prefs.last_run == result.run_dir == window.run.config.out
    from loragui.gui.prefs import Preferences

    qtbot.waitUntil(lambda: Preferences.load().last_run == result.run_dir, timeout=5000)


def test_the_last_run_is_shown_after_a_restart(qtbot, tiny_base, dataset, user_dirs):
    from loragui.engine.config import TrainConfig
    from loragui.engine.train import run_training
    from loragui.gui.prefs import Preferences
    from loragui.gui.window import MainWindow

    run = user_dirs / "userdata" / "runs" / "2020-01-01_00-00-00"
    config = TrainConfig(images=str(dataset[0]), masks=str(dataset[1]), out=str(run),
                         base=str(tiny_base), **(TINY_TRAINING | {"epochs": 2, "early_stop": False}),
                         steps_per_epoch=2)
    events = list(run_training(config, threading.Event()))
    assert isinstance(events[-1], RunFinished)
    prefs = Preferences.load()
    prefs.last_run = str(run)
    prefs.save()

    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.results.isVisible() and "Validation Dice" in win.results.text.text(),
                    timeout=30000)
    qtbot.waitUntil(lambda: win.training_view is not None
                    and win.stack.currentWidget() is win.training_view
                    and win.training_view.curves.epochs.n == 3, timeout=30000)
    curves = win.training_view.curves
    assert [int(e) for e in curves.epochs.view()[:, 0]] == [0, 1, 2]  # as drawn live
    assert curves.base_line.isVisible()
    assert win.export_action.isEnabled()  # the run's adapter is what Export works on
    assert not win.resume_button.isVisible()  # it finished
    wait_idle(qtbot, win)


@pytest.mark.parametrize("how", ["raises", "fails"])
def test_training_failure_is_shown_once_in_the_run_column(qtbot, window, dataset, tiny_base,
                                                         dialogs, how):
    from tests.gui.test_gui_data import places_showing

    prepare(qtbot, window, dataset, tiny_base)

    def broken(config, stop):
        yield RunStarted(config.out, "cpu", 4, 2, 1, 1, 1, 0, 10, 100, "lora")
        if how == "raises":
            raise ValueError("boom")
        yield RunFailed("The masks are empty.", "details here")

    window.run_training = broken
    window.start_training()
    result = wait_result(qtbot, window)
    assert isinstance(result, RunFailed)
    assert not dialogs.messages
    if how == "raises":
        assert "boom" in window.results.text.text()
        assert "Traceback" in window.results.text.toolTip()
    else:
        shown = [w for w, text in (("run column", window.results.text.text()),
                                   ("log", window.log_view.toPlainText()),
                                   ("status bar", window.warning_label.text()))
                 if "The masks are empty." in text]
        assert shown == ["run column"] and not places_showing(window, dialogs, "The masks are")
        assert window.results.text.toolTip() == "details here"
        assert "Training failed (the run column says why)" in window.warning_label.text()
    assert window.train_button.isEnabled()  # usable again


def test_a_failed_start_leaves_no_run_folder_and_keeps_the_resume_offer(
        qtbot, window, dataset, tiny_base, dialogs, user_dirs):
    """Settings the engine refuses (a layer pattern that matches nothing), in the real
    training child: the folder it was given is gone again, the earlier run's Resume
    stays, and the run column alone says why."""

    runs = user_dirs / "userdata" / "runs"
    earlier = runs / "2020-01-01_00-00-00"
    interrupted_run(earlier, dataset, tiny_base)
    prepare(qtbot, window, dataset, tiny_base)
    window.resume_offer.check()
    qtbot.waitUntil(window.resume_button.isVisible, timeout=20000)
    offered = window.resume_button.text()
    window.config_overrides["targets"] = ["no_such_layer*"]
    window.start_training()
    assert not window.resume_button.isVisible()  # while it starts
    result = wait_result(qtbot, window)
    assert isinstance(result, RunFailed) and "no_such_layer" in result.message
    assert [p.name for p in runs.iterdir()] == [earlier.name]
    assert window.prefs.last_run == ""  # a run that never was is not "the last run"
    assert window.resume_button.isVisible() and window.resume_button.text() == offered
    assert window.resume_button.isEnabled()
    assert not dialogs.messages
    why = "matches no convolution of the model"
    assert why in result.message and why in window.results.text.text()
    assert why not in window.log_view.toPlainText()
    assert why not in window.warning_label.text()
    wait_idle(qtbot, window)


def test_all_gpus_is_offered_only_with_several(qtbot):
    from loragui.engine.devices import DeviceInfo
    from loragui.gui.settings import MULTI_GPU, SettingsPanel

    panel = SettingsPanel()
    qtbot.addWidget(panel)
    cpu = DeviceInfo("cpu", "CPU", True)
    gpus = [DeviceInfo(f"cuda:{i}", "GPU", True) for i in range(3)]
    panel.set_devices([cpu, gpus[0]])
    assert panel.device.findData(MULTI_GPU) < 0  # one GPU: nothing to spread over
    panel.set_devices([cpu, *gpus[:2], DeviceInfo("mps", "Apple GPU", False, "no")])
    index = panel.device.findData(MULTI_GPU)
    assert index >= 0 and panel.device.itemText(index) == "All GPUs (2)"
    panel.device.setCurrentIndex(index)
    assert panel.values()["device"] == "all"
    config = panel.make_config("imgs", "masks", "out")
    assert "--devices all" in config.command_line() and "--device " not in config.command_line()
    panel.set_devices([cpu, *gpus])  # the choice survives a refresh, with the new count
    assert panel.device.currentText() == "All GPUs (3)"


def test_several_processes_from_the_window(qtbot, window, dataset, tiny_base, dialogs):
    """A multi-device choice runs ``train --devices`` as the child: two gloo processes
    here (the same path as "All GPUs" on a GPU machine); curves and previews come from
    rank 0's events, and Stop stops both ranks."""
    prepare(qtbot, window, dataset, tiny_base, epochs=3)

    def two_processes() -> None:  # (the device list is filled again once GPUs are looked for)
        combo = window.settings.device
        if combo.findData("cpu,cpu") < 0:
            combo.addItem("Two CPU processes", "cpu,cpu")
        combo.setCurrentIndex(combo.findData("cpu,cpu"))

    two_processes()
    window.start_training()
    result = wait_result(qtbot, window, timeout=180000)
    assert isinstance(result, RunFinished), getattr(result, "details", result)
    run = json.loads((Path(result.run_dir) / "run.json").read_text())
    assert run["world_size"] == 2 and run["distributed"]["backend"] == "gloo"
    assert run["effective_batch_size"] == 2 * run["batch_size_used"]
    command = window.run.worker.proc.args
    assert command[command.index("--devices") + 1] == "cpu,cpu"
    assert json.loads((Path(result.run_dir) / "config.json").read_text())["device"] == "auto"
    curves = window.training_view.curves
    assert curves.epochs.n == 4 and curves.steps.n == run["steps"]
    assert window.training_view.previews.epoch == 3
    assert "effective batch" in window.log_view.toPlainText()

    window.settings.set_values({"epochs": 200})  # Stop reaches both processes
    two_processes()
    window.start_training()
    qtbot.waitUntil(lambda: window.training_view.curves.steps.n >= 3, timeout=120000)
    window.stop_training()
    result = wait_result(qtbot, window, timeout=60000)
    assert isinstance(result, RunFinished) and result.stopped
    assert window.run.worker.proc.poll() is not None
    run = json.loads((Path(result.run_dir) / "run.json").read_text())
    assert run["status"] == "stopped" and run["world_size"] == 2
    assert run["steps"] < run["total_steps"]
    assert not dialogs.messages


def test_a_run_that_ended_early_says_why_and_shows_the_time(qtbot, window, dataset, tiny_base,
                                                            dialogs):
    prepare(qtbot, window, dataset, tiny_base)
    reason = "no improvement for 6 validations; best Dice 0.870 at epoch 12"

    def ended_early(config, stop):
        yield RunStarted(config.out, "cpu", 4, 2, 40, 1, 40, 0, 10, 100, "lora")
        yield EpochEvent(1, 40, 1, 0.5, 0.4, 0.87, 0.8, 0.87, 0.8, 1, 0.87, True, seconds=0.5,
                         elapsed=83.0)
        yield RunFinished(config.out, "", 12, 0.87, 0.1, 18, 90.0, reason=reason,
                          early_stopped=True)

    window.run_training = ended_early
    window.start_training()
    result = wait_result(qtbot, window)
    assert result.early_stopped
    assert f"Training ended early: {reason}" in window.results.text.text()
    log = window.log_view.toPlainText()
    assert f"Training ended early: {reason}." in log
    assert "Epoch 1/40:" in log and "at 1 min 23 s" in log
