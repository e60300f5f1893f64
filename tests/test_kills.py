"""Processes killed with SIGKILL: during an adapter write (forked writers) and in the
middle of a real ``loragui train`` run, resumed three times: the files stay whole and
the resumed run matches an uninterrupted one."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from loragui import cli
from loragui.engine import adapters
from loragui.engine.adapters import load_adapter, write_adapter
from loragui.engine.atomic import (
    clean_folder,
    stale_temporaries,
)
from loragui.engine.config import TrainConfig
from loragui.engine.formats import PEFT_PREFIX
from loragui.engine.train import find_resumable
from tests.faultkit import (
    finished,
    no_temporaries,
    run,
)
from tests.tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]


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
