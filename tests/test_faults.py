"""Faults during training and while writing files, injected on purpose.

* Writes: a full disk, a read-only folder or a failing writer gives a clear
  message, leaves no partial file and keeps the previous file (monkeypatched
  everywhere; also for real on a small tmpfs where this machine allows mounts).
* Training: a NaN/inf loss or gradient backs off (restores the last good
  weights, halves the learning rate); out of memory halves the batch; a failed
  checkpoint stops the run with the previous checkpoint intact.
* Data folders deleted or changed while training runs.
* Processes killed with SIGKILL: during an adapter write (forked writers) and
  in the middle of a real ``loragui train`` run, resumed three times.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from loragui import cli
from loragui.engine import adapters
from loragui.engine import dataset as dataset_module
from loragui.engine import train as train_module
from loragui.engine.adapters import load_adapter, write_adapter
from loragui.engine.atomic import (
    atomic_folder,
    atomic_write,
    atomic_write_text,
    clean_folder,
    recover_folder,
    stale_temporaries,
)
from loragui.engine.basemodel import load_model
from loragui.engine.config import TrainConfig
from loragui.engine.errors import LoraGuiError
from loragui.engine.events import (
    EpochEvent,
    LogEvent,
    RunFailed,
    RunFinished,
    RunStarted,
    StepEvent,
)
from loragui.engine.exports import export_adapter, merge_adapter_file
from loragui.engine.faults import MAX_BACKOFFS, is_out_of_memory
from loragui.engine.formats import PEFT_PREFIX
from loragui.engine.train import find_resumable, lr_factor, run_training
from loragui.engine.unet import UNet
from tests.messy import make_tiny_dataset
from tests.tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------
# Helpers


def run(config: TrainConfig, stop=None, on_event=None) -> list:
    events = []
    for ev in run_training(config, stop):
        events.append(ev)
        if on_event is not None:
            on_event(ev)
    return events


def finished(events: list) -> RunFinished:
    last = events[-1]
    assert isinstance(last, RunFinished), getattr(last, "message", last) + getattr(last, "details", "")
    return last


def failed(events: list) -> RunFailed:
    last = events[-1]
    assert isinstance(last, RunFailed), last
    assert not last.details, last.details  # a clear message, not a crash with a traceback
    return last


def warnings_of(events: list) -> list[str]:
    return [e.message for e in events if isinstance(e, LogEvent) and e.level == "warning"]


def steps_of(events: list) -> list[int]:
    return [e.step for e in events if isinstance(e, StepEvent)]


def no_temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.endswith(".old")]


def patch_training_forward(monkeypatch, fault):
    """Call ``fault(model, x, n, real_forward)`` on the n-th training forward
    (n counts attempts, from 1); it returns logits, or None for the real ones."""
    real = UNet.forward
    calls = {"n": 0}

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            calls["n"] += 1
            out = fault(self, x, calls["n"], real)
            if out is not None:
                return out
        return real(self, x)

    monkeypatch.setattr(UNet, "forward", forward)
    return calls


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# --------------------------------------------------------------------------
# Atomic writes


def test_atomic_write_disk_full_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    atomic_write_text(target, "old")
    monkeypatch.setattr(os, "replace", enospc)
    with pytest.raises(LoraGuiError, match="the disk is full; free some space") as info:
        atomic_write_text(target, "new")
    assert str(target) in str(info.value) and "previous file there is unchanged" in str(info.value)
    assert target.read_text() == "old"
    assert no_temporaries(tmp_path) == []


@pytest.mark.parametrize("raised, words", [
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "quota"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only"),
    (OSError(errno.EACCES, "Permission denied"), "permission denied"),
    (OSError(errno.EIO, "Input/output error"), "unplugged"),
    # safetensors' save_file on a full disk (its real message)
    (Exception("Error while serializing: I/O error: No space left on device (os error 28)"),
     "the disk is full"),
    (RuntimeError("Parent directory does not exist. Read-only file system"), "read-only"),
])
def test_atomic_write_maps_writer_errors(tmp_path, raised, words):
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"previous")

    def writer(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise raised

    with pytest.raises(LoraGuiError) as info:
        atomic_write(target, writer)
    assert words in str(info.value).lower()
    assert target.read_bytes() == b"previous"
    assert no_temporaries(tmp_path) == []


def test_torch_save_short_write_is_called_a_full_disk(tmp_path, monkeypatch):
    """torch.save on a full disk raises "unexpected pos N vs M": judged by the free space."""
    target = tmp_path / "checkpoint.pt"

    def writer(tmp: Path) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=4096))
    with pytest.raises(LoraGuiError, match="the disk is full"):
        atomic_write(target, writer)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10**12))
    with pytest.raises(LoraGuiError, match="cut short .*unexpected pos.* free space"):
        atomic_write(target, writer)
    assert not target.exists() and no_temporaries(tmp_path) == []


def test_atomic_write_bugs_pass_through_and_leave_nothing(tmp_path):
    def writer(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise TypeError("a bug, not a disk problem")

    with pytest.raises(TypeError):
        atomic_write(tmp_path / "x.bin", writer)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_temp_file_cannot_be_created(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "mkstemp",
                        lambda **kw: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only")))
    with pytest.raises(LoraGuiError, match="read-only; choose another folder"):
        atomic_write_text(tmp_path / "a.txt", "x")


def test_atomic_files_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = atomic_write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    with atomic_folder(tmp_path / "adapter") as tmp:
        (tmp / "w.bin").write_bytes(b"w")
    assert stat.S_IMODE((tmp_path / "adapter").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "adapter" / "w.bin").stat().st_mode) == 0o666 & ~umask


def _make_folder(path: Path, text: str) -> None:
    with atomic_folder(path) as tmp:
        (tmp / "content.txt").write_text(text)


def test_atomic_folder_failed_swap_puts_previous_back(tmp_path, monkeypatch):
    target = tmp_path / "adapter"
    _make_folder(target, "v1")
    real = os.replace

    def replace(src, dst):
        if Path(dst) == target and Path(src).name.endswith(".tmp"):  # new folder into place
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(LoraGuiError, match="input/output error"):
        _make_folder(target, "v2")
    assert (target / "content.txt").read_text() == "v1"
    assert no_temporaries(tmp_path) == []


def test_atomic_folder_writer_fails_midway(tmp_path):
    target = tmp_path / "adapter"
    _make_folder(target, "v1")
    with pytest.raises(LoraGuiError, match="the disk is full"):
        with atomic_folder(target) as tmp:
            (tmp / "content.txt").write_text("half")
            raise Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert (target / "content.txt").read_text() == "v1"
    assert no_temporaries(tmp_path) == []


def test_recover_and_clean_what_a_killed_writer_left(tmp_path):
    target = tmp_path / "adapter"
    _make_folder(target, "v1")
    # killed between the two renames: only .adapter.old exists
    os.replace(target, tmp_path / ".adapter.old")
    (tmp_path / ".adapter.k2j3h4.tmp").mkdir()
    (tmp_path / ".checkpoint.pt.ab12cd.tmp").write_bytes(b"half")
    (tmp_path / ".unrelated.tmp").write_bytes(b"not ours")
    removed = clean_folder(tmp_path, ["adapter", "checkpoint.pt"])
    assert (target / "content.txt").read_text() == "v1"
    assert sorted(p.name for p in removed) == [".adapter.k2j3h4.tmp", ".checkpoint.pt.ab12cd.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".unrelated.tmp", "adapter"]
    recover_folder(target)  # nothing to do: harmless
    assert stale_temporaries(tmp_path, ["adapter"]) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders; see the tmpfs test")
def test_read_only_folder_chmod(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    atomic_write_text(folder / "a.txt", "old")
    os.chmod(folder, 0o555)
    try:
        with pytest.raises(LoraGuiError, match="permission denied"):
            atomic_write_text(folder / "a.txt", "new")
        assert (folder / "a.txt").read_text() == "old"
    finally:
        os.chmod(folder, 0o755)


# --------------------------------------------------------------------------
# A real full or read-only disk: a small tmpfs (needs root and mount rights)


@contextlib.contextmanager
def small_disk(path: Path, size_kb: int):
    path.mkdir()
    if os.name != "posix" or not hasattr(os, "geteuid") or os.geteuid() != 0 \
            or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root on Linux")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, mode: str) -> None:
    proc = subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def fill(folder: Path) -> Path:
    """Write a file until the disk is full."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 4096)
    return filler


def test_real_full_disk_for_every_writer(tmp_path):
    from safetensors.torch import save_file

    with small_disk(tmp_path / "disk", 256) as disk:
        atomic_write_text(disk / "metrics.csv", "old")
        write_adapter({PEFT_PREFIX + "a.lora_A.weight": torch.ones(2, 2)},
                      {"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": ["a"]},
                      disk / "adapter")
        filler = fill(disk)
        big = {"w": torch.zeros(100_000)}
        for name, write in [("torch.save", lambda p: atomic_write(p, lambda t: torch.save(big, t))),
                            ("save_file", lambda p: atomic_write(p, lambda t: save_file(big, str(t)))),
                            ("text", lambda p: atomic_write_text(p, "x" * 400_000))]:
            with pytest.raises(LoraGuiError, match="the disk is full") as info:
                write(disk / "metrics.csv")
            assert "previous file there is unchanged" in str(info.value), name
            assert (disk / "metrics.csv").read_text() == "old"
        with pytest.raises(LoraGuiError, match="the disk is full"):
            write_adapter({PEFT_PREFIX + "a.lora_A.weight": torch.zeros(100_000)},
                          {"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": ["a"]},
                          disk / "adapter")
        assert load_adapter(disk / "adapter").tensors["a.lora_A.weight"].sum() == 4
        filler.unlink()
        assert sorted(p.name for p in disk.iterdir()) == ["adapter", "metrics.csv"]
        remount(disk, "ro")
        with pytest.raises(LoraGuiError, match="read-only; choose another folder"):
            atomic_write_text(disk / "metrics.csv", "new")
        with pytest.raises(LoraGuiError, match="read-only"):
            export_adapter(disk / "adapter", disk / "exported", single_file=True)
        assert (disk / "metrics.csv").read_text() == "old"


def test_real_full_disk_during_training_stops_and_resumes(tmp_path):
    config = tiny_config(tmp_path)
    with small_disk(tmp_path / "disk", 2048) as disk:
        config.out = str(disk / "run")
        filler = []

        def on_event(ev):
            if isinstance(ev, EpochEvent) and ev.epoch == 1:
                filler.append(fill(disk))

        events = run(config, on_event=on_event)
        fail = failed(events)
        assert "the disk is full" in fail.message
        assert "Training stopped at step 10 of 20" in fail.message
        assert "checkpoint from step 5 is intact" in fail.message
        assert "--resume" in fail.message
        info = find_resumable(config.out)
        assert info is not None and info["step"] == 5 and info["epoch"] == 1
        assert no_temporaries(Path(config.out)) == []
        filler[0].unlink()
        config.resume = True
        events = run(config)
        assert finished(events).steps == 20
        assert next(e for e in events if isinstance(e, RunStarted)).start_step == 5
        rows = list(csv.DictReader(open(Path(config.out) / "metrics.csv")))
        assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
        # and a read-only disk at a checkpoint: the same clear stop
        config.resume = False
        config.out = str(disk / "run2")

        def read_only(ev):
            if isinstance(ev, EpochEvent) and ev.epoch == 2:
                remount(disk, "ro")

        try:
            fail = failed(run(config, on_event=read_only))
        finally:
            remount(disk, "rw")
        assert "read-only" in fail.message and "checkpoint from step 10 is intact" in fail.message


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


# --------------------------------------------------------------------------
# Killed during an adapter write (real processes, forked so torch loads once)


ADAPTER_CONFIG = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["layer"]}


def _adapter_version(i: int) -> tuple[dict, dict]:
    tensors = {PEFT_PREFIX + f"layer{k}.lora_A.weight": torch.full((256, 1024), float(i))
               for k in range(4)}
    return tensors, {**ADAPTER_CONFIG, "loragui": {"version": i}}


def _fork(child) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            child()
        finally:
            os._exit(0)
    return pid


def _check_adapter(path: Path) -> int:
    """The adapter at ``path`` loads and is one whole version; returns it."""
    adapter = load_adapter(path)  # restores the previous folder if a swap was cut in half
    version = adapter.config["loragui"]["version"]
    assert len(adapter.tensors) == 4
    assert all(bool((t == version).all()) for t in adapter.tensors.values()), version
    return version


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork (POSIX)")


@needs_fork
def test_sigkill_during_adapter_writes_keeps_a_whole_adapter(tmp_path):
    dest = tmp_path / "adapter"
    write_adapter(*_adapter_version(0), dest)
    rng = random.Random(7)
    done_versions = [0]
    cut_short = 0  # kills that left a half-written adapter behind
    for _attempt in range(5):
        read_fd, write_fd = os.pipe()
        start = done_versions[-1] + 1

        def writer(start=start, write_fd=write_fd):
            for i in range(start, start + 10_000):
                write_adapter(*_adapter_version(i), dest)
                os.write(write_fd, f"{i}\n".encode())

        pid = _fork(writer)
        os.close(write_fd)
        with os.fdopen(read_fd) as reader:
            first = reader.readline()  # one whole write done: the next is under way
            assert first.strip() == str(start)
            time.sleep(rng.uniform(0.0, 0.15))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            finished_ = [int(line) for line in reader.read().split()] + [int(first)]
        last_done = max(finished_)
        version = _check_adapter(dest)
        # the newest whole write, or the one being swapped in when the kill came
        assert version in (last_done, last_done + 1), (version, last_done)
        done_versions.append(version)
        cut_short += bool(stale_temporaries(tmp_path, ["adapter"]))
        clean_folder(tmp_path, ["adapter"])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    assert cut_short >= 1  # the kills did land in the middle of writes


@needs_fork
@pytest.mark.parametrize("moment", ["writing the weights", "between the renames"])
def test_sigkill_at_the_worst_moment_of_an_adapter_write(tmp_path, moment):
    dest = tmp_path / "adapter"
    write_adapter(*_adapter_version(1), dest)

    def writer():
        if moment == "writing the weights":
            def save_file(tensors, filename, metadata=None):
                Path(filename).write_bytes(b"\0" * 1000)  # half a file, then the power goes
                os.kill(os.getpid(), signal.SIGKILL)

            adapters.save_file = save_file
        else:
            real = os.replace

            def replace(src, dst):
                if Path(dst) == dest:  # the old folder is aside, the new one not yet in place
                    os.kill(os.getpid(), signal.SIGKILL)
                real(src, dst)

            os.replace = replace
        write_adapter(*_adapter_version(2), dest)

    pid = _fork(writer)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if moment == "between the renames":
        assert not dest.exists() and (tmp_path / ".adapter.old").is_dir()
    assert stale_temporaries(tmp_path, ["adapter"])  # the killed writer's leftovers
    assert _check_adapter(dest) == 1  # the previous adapter, whole
    clean_folder(tmp_path, ["adapter"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    write_adapter(*_adapter_version(3), dest)  # and the next write works
    assert _check_adapter(dest) == 3


# --------------------------------------------------------------------------
# A real `loragui train` killed with SIGKILL at random steps, resumed each time


def _train_process(config: TrainConfig, resume: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "loragui", "train", "--images", config.images, "--masks",
            config.masks, "--out", config.out, "--base", config.base, "--rank", str(config.rank),
            "--alpha", str(config.alpha), "--epochs", str(config.epochs), "--steps-per-epoch",
            str(config.steps_per_epoch), "--batch-size", str(config.batch_size), "--crop-size",
            str(config.crop_size), "--val-fraction", str(config.val_fraction), "--lr",
            str(config.lr), "--device", "cpu", "--events", "jsonl", "--no-early-stop"]
    if resume:
        args.append("--resume")
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)


@pytest.mark.slow
def test_sigkill_at_random_steps_then_resume_matches_uninterrupted_run(tmp_path, capsys):
    # To the maximum: resuming with the early-stopping rule is tests/test_early_stop.py's.
    reference = tiny_config(tmp_path / "reference", epochs=8, early_stop=False)
    ref_done = finished(run(reference))
    ref_final = json.loads((Path(reference.out) / "run.json").read_text())["final"]

    config = tiny_config(tmp_path / "killed", epochs=8, early_stop=False)
    spe, total = config.steps_per_epoch, 40
    rng = random.Random(2024)
    start_step = 0
    for attempt in range(3):  # killed three times
        proc = _train_process(config, resume=attempt > 0)
        kill_at = rng.randint(start_step + 1, start_step + 2 * spe)
        last_step, last_epoch_step, started = 0, 0, None
        for line in proc.stdout:
            ev = json.loads(line)
            if ev["event"] == "RunStarted":
                started = ev["start_step"]
            elif ev["event"] == "StepEvent":
                last_step = ev["step"]
            elif ev["event"] == "EpochEvent":
                last_epoch_step = ev["step"]
            if last_step >= kill_at:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=120)
        err = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        assert "Traceback" not in err, err
        # resumed from the last epoch end this process (or the previous one) reported
        assert started == start_step, (attempt, started, start_step)
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, err)
        # what the next run may lose: at most the epoch in progress at the kill
        floor = max(last_epoch_step, (last_step - 1) // spe * spe)
        info = find_resumable(config.out)
        if info is None:  # killed in the first epoch, before any checkpoint: starts over
            assert floor == 0, (last_step, last_epoch_step)
            start_step = 0
        else:
            assert info["step"] >= floor and info["step"] % spe == 0, \
                (info, last_step, last_epoch_step)
            start_step = info["step"]
    # the last resume runs to the end (the same command line, in this process to save time)
    status = cli.main(["train", "--images", config.images, "--masks", config.masks, "--out",
                       config.out, "--base", config.base, "--rank", "4", "--alpha", "8",
                       "--epochs", "8", "--steps-per-epoch", "5", "--batch-size", "4",
                       "--crop-size", "32", "--val-fraction", "0.25", "--lr", "0.01",
                       "--device", "cpu", "--resume", "--events", "jsonl", "--no-early-stop"])
    assert status == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert next(e for e in events if e["event"] == "RunStarted")["start_step"] == start_step
    assert [e["step"] for e in events if e["event"] == "StepEvent"] == \
        list(range(start_step + 1, total + 1))

    run_dir = Path(config.out)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["steps"] == total and record["status"] == "finished"
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))  # no gap, no duplicate
    assert [int(r["step"]) for r in rows] == list(range(spe, total + 1, spe))
    adapter = load_adapter(run_dir / "adapter")
    assert adapter.config["loragui"]["epoch"] == ref_done.best_epoch
    expected = load_adapter(Path(reference.out) / "adapter").tensors
    for k, v in expected.items():
        assert torch.allclose(adapter.tensors[k], v, atol=1e-4), k
    assert abs(record["final"]["dice"] - ref_final["dice"]) < 0.02
    assert no_temporaries(run_dir) == []


def test_a_checkpoint_lacking_fields_is_refused(tmp_path):
    from loragui.engine.checkpoint import Checkpoint

    torch.save({"format": "loragui.checkpoint", "step": 3}, tmp_path / "checkpoint.pt")
    assert find_resumable(tmp_path) is None
    with pytest.raises(LoraGuiError, match="lacks config, trainable, optimizer"):
        Checkpoint.load(tmp_path)
