"""Faults during training, injected on purpose: a NaN/inf loss or gradient backs off
(restores the last good weights, halves the learning rate); out of memory halves the
batch; a failed checkpoint or adapter write stops the run with the previous file
intact; data folders deleted or changed while training runs.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch

from loragui import cli
from loragui.engine import adapters
from loragui.engine import dataset as dataset_module
from loragui.engine import train as train_module
from loragui.engine.adapters import load_adapter
from loragui.engine.basemodel import load_model
from loragui.engine.config import TrainConfig
from loragui.engine.errors import LoraGuiError
from loragui.engine.events import (
    EpochEvent,
    StepEvent,
)
from loragui.engine.exports import export_adapter, merge_adapter_file
from loragui.engine.faults import MAX_BACKOFFS, is_out_of_memory
from loragui.engine.train import find_resumable, lr_factor
from loragui.engine.unet import UNet
from tests.faultkit import (
    enospc,
    failed,
    finished,
    no_temporaries,
    patch_training_forward,
    run,
    steps_of,
    warnings_of,
)
from tests.messy import make_tiny_dataset
from tests.tiny import tiny_config

# --------------------------------------------------------------------------
# Non-finite loss and gradients


def test_nan_loss_restores_last_good_weights_and_halves_lr(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)

    def poison(model, x, n, real):
        if n == 8:  # step 8 (epoch 2): the weights blow up and the loss is NaN
            with torch.no_grad():
                for p in model.parameters():
                    if p.requires_grad:
                        p.fill_(float("nan"))
        return None

    patch_training_forward(monkeypatch, poison)
    events = run(config)
    done = finished(events)  # had the weights not been restored, every later loss would be NaN
    assert steps_of(events) == list(range(1, 21))  # the step is retried, none lost or repeated
    (msg,) = [w for w in warnings_of(events) if "back-off" in w]
    assert msg.startswith("step 8: the loss was nan; restored the weights from step 5 "
                          "(end of epoch 1) and halved the learning rate to a peak of 0.005")
    step8 = next(e for e in events if isinstance(e, StepEvent) and e.step == 8)
    assert step8.lr == pytest.approx(config.lr * 0.5 * lr_factor(7, 20, 1))
    adapter = load_adapter(done.output)  # finite, or it would not load
    assert all(torch.isfinite(t).all() for t in adapter.tensors.values())
    record = json.loads((Path(config.out) / "run.json").read_text())
    assert record["backoffs"] == 1 and record["lr_scale"] == 0.5 and record["status"] == "finished"
    assert record["faults"] == [msg]


def test_nan_at_the_first_step_restores_the_start(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, epochs=1)
    patch_training_forward(monkeypatch, lambda m, x, n, real: real(m, x) * float("nan")
                           if n == 1 else None)
    events = run(config)
    finished(events)
    assert any("restored the weights from the start of the run" in w for w in warnings_of(events))


def test_infinite_gradients_are_not_applied(tmp_path, monkeypatch):
    class InfGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float("inf")

    config = tiny_config(tmp_path, epochs=2)
    patch_training_forward(monkeypatch, lambda m, x, n, real: InfGrad.apply(real(m, x))
                           if n == 3 else None)
    events = run(config)
    done = finished(events)
    (msg,) = [w for w in warnings_of(events) if "back-off" in w]
    assert msg.startswith("step 3: the gradients were not finite (inf or NaN); restored")
    assert steps_of(events) == list(range(1, 11))
    assert all(torch.isfinite(t).all() for t in load_adapter(done.output).tensors.values())


def test_persistent_nan_gives_up_keeping_best_adapter_and_checkpoint(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)
    patch_training_forward(monkeypatch, lambda m, x, n, real: real(m, x) * float("nan")
                           if n >= 12 else None)
    events = run(config)
    fail = failed(events)
    backoffs = [w for w in warnings_of(events) if "back-off" in w]
    assert len(backoffs) == MAX_BACKOFFS
    assert backoffs[-1].endswith(f"(back-off {MAX_BACKOFFS} of at most {MAX_BACKOFFS})")
    assert fail.message.startswith("step 12: the loss was nan again, after the learning rate was "
                                   f"halved {MAX_BACKOFFS} times (to a peak of 0.000625)")
    assert "try a much lower --lr (for example 0.001)" in fail.message
    assert "checkpoint from step 10 is intact" in fail.message
    best = max((e for e in events if isinstance(e, EpochEvent) and e.is_best), key=lambda e: e.epoch)
    assert fail.output == str(Path(config.out) / "adapter")
    assert load_adapter(fail.output).config["loragui"]["epoch"] == best.epoch
    assert load_adapter(fail.output).tensors
    assert find_resumable(config.out)["step"] == 10
    assert max(steps_of(events)) == 11
    record = json.loads((Path(config.out) / "run.json").read_text())
    assert record["status"] == "failed" and record["error"] == fail.message


def test_lowered_lr_is_kept_across_resume(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)
    stop = threading.Event()
    with monkeypatch.context() as m:
        patch_training_forward(m, lambda mod, x, n, real: real(mod, x) * float("inf")
                               if n == 2 else None)
        run(config, stop, on_event=lambda ev: isinstance(ev, StepEvent) and ev.step == 7
            and stop.set())
    config.resume = True
    events = run(config)
    finished(events)
    assert any("learning rate stays at a peak of 0.005" in w for w in warnings_of(events))
    step8 = next(e for e in events if isinstance(e, StepEvent) and e.step == 8)
    assert step8.lr == pytest.approx(config.lr * 0.5 * lr_factor(7, 20, 1))


# --------------------------------------------------------------------------
# Out of memory


def test_out_of_memory_halves_the_batch_and_continues(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, batch_size=8, epochs=2)
    seen = []

    def oom(model, x, n, real):
        seen.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return None

    patch_training_forward(monkeypatch, oom)
    events = run(config)
    finished(events)
    assert seen[:3] == [8, 4, 2] and set(seen[3:]) == {2}
    assert steps_of(events) == list(range(1, 11))
    msgs = [w for w in warnings_of(events) if "out of memory" in w]
    assert msgs == [
        "the computer (CPU memory) ran out of memory at step 1 with a batch of 8; retrying with a "
        "batch of 4 (the batch size is now 4 for the rest of the run; the learning rate is "
        "unchanged)",
        "the computer (CPU memory) ran out of memory at step 1 with a batch of 4; retrying with a "
        "batch of 2 (the batch size is now 2 for the rest of the run; the learning rate is "
        "unchanged)"]
    record = json.loads((Path(config.out) / "run.json").read_text())
    assert record["batch_size_used"] == 2 and record["faults"] == msgs
    assert record["config"]["batch_size"] == 8


def test_reduced_batch_is_kept_across_resume(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, batch_size=4, epochs=2)
    seen = []

    def oom(model, x, n, real):
        seen.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("out of memory")
        return None

    patch_training_forward(monkeypatch, oom)
    stop = threading.Event()
    run(config, stop, on_event=lambda ev: isinstance(ev, StepEvent) and ev.step == 3 and stop.set())
    seen.clear()
    config.resume = True
    events = run(config)
    finished(events)
    assert set(seen) == {2}  # no second out-of-memory error after resuming
    assert any("batch size stays at 2" in w for w in warnings_of(events))


def test_out_of_memory_at_batch_one_gives_up_clearly(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, batch_size=2)

    def oom(model, x, n, real):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    patch_training_forward(monkeypatch, oom)
    fail = failed(run(config))
    assert fail.message.startswith("the computer (CPU memory) ran out of memory even with a batch "
                                   "of 1 crop of 32×32 pixels (CUDA out of memory. Tried to "
                                   "allocate 2.00 GiB). Use a smaller --crop-size")


def test_out_of_memory_in_validation_shrinks_its_batches(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, epochs=1)
    real = UNet.forward

    def forward(self, x):
        if not self.training and x.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory.")
        return real(self, x)

    monkeypatch.setattr(UNet, "forward", forward)
    events = run(config)
    finished(events)
    assert "the computer (CPU memory) ran out of memory validating 2 images at once; validating " \
           "1 at a time from now on" in warnings_of(events)
    assert all(e.dice is not None for e in events if isinstance(e, EpochEvent))


def test_out_of_memory_outside_a_step(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)

    def sampler(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(train_module, "CropSampler", sampler)
    fail = failed(run(config))
    assert "ran out of memory outside a training step (CUDA out of memory. Tried to allocate " \
           "9.00 GiB). Use fewer or smaller images" in fail.message


@pytest.mark.parametrize("fault, words", [
    ("oom", "ran out of memory even with a batch of 1 crop of 32×32 pixels"),
    ("nan", "the loss was nan again, after the learning rate was halved"),
])
def test_command_line_reports_training_faults_exit_2(tmp_path, monkeypatch, capsys, fault, words):
    config = tiny_config(tmp_path, epochs=2)

    def inject(model, x, n, real):
        if fault == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, x) * float("nan") if n >= 7 else None

    patch_training_forward(monkeypatch, inject)
    status = cli.main(["train", "--images", config.images, "--masks", config.masks, "--out",
                       config.out, "--base", config.base, "--epochs", "2", "--steps-per-epoch",
                       "5", "--batch-size", "2", "--crop-size", "32", "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert err.startswith("loragui: error: ") and words in err
    if fault == "nan":  # the best adapter of epoch 1 is kept and named
        assert f"the best result so far is kept in {Path(config.out) / 'adapter'}" in err


def test_out_of_memory_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                         "can't allocate memory: you tried to allocate 10 bytes"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


# --------------------------------------------------------------------------
# Failed writes during a run


def test_checkpoint_write_failure_stops_with_previous_checkpoint_intact(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)
    real = os.replace
    count = {"checkpoints": 0}

    def replace(src, dst):
        if Path(dst).name == "checkpoint.pt":
            count["checkpoints"] += 1
            if count["checkpoints"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    with monkeypatch.context() as m:
        m.setattr(os, "replace", replace)
        events = run(config)
    fail = failed(events)
    run_dir = Path(config.out)
    assert fail.message.startswith(f"could not write {run_dir / 'checkpoint.pt'}: the disk is full")
    assert "Training stopped at step 10 of 20. The checkpoint from step 5 is intact" in fail.message
    # epoch 2 was never reported: what was reported (epoch 1) is what survives
    assert [e.epoch for e in events if isinstance(e, EpochEvent)] == [0, 1]
    assert no_temporaries(run_dir) == []
    assert find_resumable(run_dir)["step"] == 5
    config.resume = True
    events = run(config)
    assert finished(events).steps == 20
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


def test_adapter_write_failure_keeps_previous_adapter(tmp_path, monkeypatch):
    # Without validation images every epoch is the best so far: the adapter is written each time.
    config = tiny_config(tmp_path, epochs=3, val_fraction=0.0)
    written = []
    real = adapters.save_file

    def save_file(tensors, filename, metadata=None):
        if Path(filename).name == "adapter_model.safetensors":
            written.append(filename)
            if len(written) == 2:
                raise Exception("Error while serializing: I/O error: Read-only file system "
                                "(os error 30)")
        real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(adapters, "save_file", save_file)
    events = run(config)
    fail = failed(events)
    adapter = Path(config.out) / "adapter"
    assert fail.message.startswith(f"could not write {adapter}: the disk or folder is read-only; "
                                   "choose another folder. Any previous file there is unchanged.")
    assert "Training stopped at step 10 of 15. The checkpoint from step 5 is intact" in fail.message
    assert fail.output == str(adapter)
    assert load_adapter(adapter).config["loragui"]["epoch"] == 1  # the previous adapter, whole
    assert no_temporaries(Path(config.out)) == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    config = tiny_config(root, epochs=1)
    finished(run(config))
    return Path(config.base), Path(config.out) / "adapter"


def test_export_and_merge_on_a_full_disk(tmp_path, monkeypatch, capsys, trained):
    base, adapter = trained
    merged = tmp_path / "merged.safetensors"
    merge_adapter_file(base, adapter, merged)
    single = export_adapter(adapter, tmp_path / "single.safetensors", single_file=True)
    folder = export_adapter(adapter, tmp_path / "exported", single_file=False)
    before = {p: p.read_bytes() for p in (merged, single, folder / "adapter_model.safetensors")}
    with monkeypatch.context() as m:
        m.setattr(os, "replace", enospc)
        for call in (lambda: merge_adapter_file(base, adapter, merged, overwrite=True),
                     lambda: export_adapter(adapter, single, single_file=True, overwrite=True),
                     lambda: export_adapter(adapter, folder, single_file=False, overwrite=True)):
            with pytest.raises(LoraGuiError, match="the disk is full"):
                call()
        # the command line: exit status 2, one clear line, no traceback
        assert cli.main(["merge", "--adapter", str(adapter), "--base", str(base),
                         "--out", str(merged), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"loragui: error: could not write {merged}: the disk is full")
    assert "Traceback" not in err
    assert {p: p.read_bytes() for p in before} == before
    assert no_temporaries(tmp_path) == []
    load_model(merged)
    load_adapter(folder)


# --------------------------------------------------------------------------
# Resume information for the window


def test_find_resumable(tmp_path):
    config = tiny_config(tmp_path)
    assert find_resumable(config.out) is None  # no run yet
    stop = threading.Event()
    run(config, stop, on_event=lambda ev: isinstance(ev, StepEvent) and ev.step == 12 and stop.set())
    info = find_resumable(config.out)
    assert {k: info[k] for k in ("step", "total_steps", "epoch", "epochs", "steps_per_epoch",
                                 "mode")} == {"step": 12, "total_steps": 20, "epoch": 2,
                                              "epochs": 4, "steps_per_epoch": 5, "mode": "lora"}
    assert info["best_epoch"] in (1, 2) and info["saved"]
    resumed = TrainConfig.from_dict(info["config"])
    assert resumed.resume and resumed.out == config.out and resumed.images == config.images
    finished(run(resumed))
    assert find_resumable(config.out) is None  # finished: nothing to resume
    (Path(config.out) / "checkpoint.pt").write_bytes(b"garbage")
    assert find_resumable(config.out) is None


def test_starting_over_in_a_resumable_folder_warns(tmp_path):
    config = tiny_config(tmp_path, epochs=2)
    stop = threading.Event()
    run(config, stop, on_event=lambda ev: isinstance(ev, StepEvent) and ev.step == 3 and stop.set())
    assert "holds a stopped run" in failed(run(config)).message  # without --overwrite
    config.overwrite = True
    events = run(config)
    finished(events)
    assert any("holds a checkpoint of an earlier run; this run starts over" in w
               for w in warnings_of(events))


# --------------------------------------------------------------------------
# Data folders changed or deleted during a run


def test_folders_deleted_while_training_do_not_matter(tmp_path):
    """The pairs are decoded into memory once, before RunStarted: training goes on."""
    config = tiny_config(tmp_path, epochs=2)

    def on_event(ev):
        if isinstance(ev, StepEvent) and ev.step == 2:
            shutil.rmtree(config.images)
            shutil.rmtree(config.masks)

    events = run(config, on_event=on_event)
    assert finished(events).steps == 10
    assert load_adapter(Path(config.out) / "adapter").tensors
    # resuming needs the folders again: a clear error, exit status 2 on the command line
    config.resume = True
    fail = failed(run(config))
    assert "does not exist" in fail.message and str(Path(config.images)) in fail.message


def test_files_changed_while_training_do_not_matter_then_resume_warns(tmp_path):
    config = tiny_config(tmp_path, epochs=2)
    stop = threading.Event()

    def on_event(ev):
        if isinstance(ev, StepEvent) and ev.step == 2:
            for p in sorted(Path(config.images).iterdir())[:2]:
                p.write_bytes(b"overwritten by another program")
        if isinstance(ev, StepEvent) and ev.step == 7:
            stop.set()

    events = run(config, stop, on_event=on_event)
    assert finished(events).stopped
    # fix one file, change its pixels: the run resumes on the data as it is now, and says so
    from PIL import Image

    for p in sorted(Path(config.images).iterdir())[:2]:
        Image.new("RGB", (32, 32), (200, 10, 10)).save(p, format="PNG")
    config.resume = True
    events = run(config)
    finished(events)
    assert any("images or masks changed since this run's checkpoint" in w
               for w in warnings_of(events))


def test_folder_deleted_during_decoding_is_a_clean_error(tmp_path, monkeypatch, capsys):
    config = tiny_config(tmp_path)
    real = dataset_module.read_image
    calls = {"n": 0}

    def read_image(path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3 and Path(config.images).exists():
            shutil.rmtree(config.images)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "read_image", read_image)
    fail = failed(run(config))
    assert f"The folder {config.images} disappeared while loading" in fail.message
    assert "Put it back and start again" in fail.message
    assert fail.output is None and not (Path(config.out) / "run.json").exists()
    # the same on the command line: exit status 2, the message, no traceback
    make_tiny_dataset(Path(config.images).parent, n=8, size=32)
    calls["n"] = 0
    status = cli.main(["train", "--images", config.images, "--masks", config.masks, "--out",
                       config.out, "--base", config.base, "--epochs", "1", "--steps-per-epoch",
                       "2", "--batch-size", "2", "--crop-size", "32", "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2 and "disappeared while loading" in err and "Traceback" not in err




def test_a_checkpoint_lacking_fields_is_refused(tmp_path):
    from loragui.engine.checkpoint import Checkpoint

    torch.save({"format": "loragui.checkpoint", "step": 3}, tmp_path / "checkpoint.pt")
    assert find_resumable(tmp_path) is None
    with pytest.raises(LoraGuiError, match="lacks config, trainable, optimizer"):
        Checkpoint.load(tmp_path)
