"""Files written atomically: a full disk, a read-only folder or a failing writer gives a
clear message, leaves no partial file and keeps the previous file (monkeypatched
everywhere; also for real on a small tmpfs where this machine allows mounts)."""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import torch

from loragui.engine.adapters import load_adapter, write_adapter
from loragui.engine.atomic import (
    atomic_folder,
    atomic_write,
    atomic_write_text,
    clean_folder,
    recover_folder,
    stale_temporaries,
)
from loragui.engine.errors import LoraGuiError
from loragui.engine.events import (
    EpochEvent,
    RunStarted,
)
from loragui.engine.exports import export_adapter
from loragui.engine.formats import PEFT_PREFIX
from loragui.engine.train import find_resumable
from tests.faultkit import (
    enospc,
    failed,
    finished,
    no_temporaries,
    run,
)
from tests.tiny import tiny_config

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
