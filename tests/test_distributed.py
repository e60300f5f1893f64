"""Data-parallel training on this CPU-only machine: two processes, the gloo backend.

* The agreement logic of :class:`loragui.engine.distributed.Dist` (stop, out of
  memory, non-finite loss, a failed write on one rank only) in two processes.
* ``loragui train --devices cpu,cpu`` (:mod:`loragui.engine.launcher`: torchrun
  in-process) stopped with SIGINT, then resumed with a plain ``torchrun -m loragui
  train --resume``.
* A rank killed with SIGKILL: the run ends with a clear message and a checkpoint.

The processes started here import tests/distdebug/sitecustomize.py, which records what
each rank holds in $LORAGUI_DIST_DEBUG_DIR/rank<N>.json (pid, step, a digest of its
trainable weights), so the tests can compare the ranks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from loragui.engine import distributed
from loragui.engine.distributed import Dist
from loragui.engine.errors import DeviceError, LoraGuiError
from loragui.engine.launcher import parse_devices
from loragui.engine.outputs import LOCK, MARKER
from loragui.engine.train import RUN_FILES, find_resumable
from tests.messy import make_tiny_dataset
from tests.tiny import make_tiny_base

ROOT = Path(__file__).resolve().parents[1]
RANK_RECORDER = Path(__file__).resolve().parent / "distdebug"  # its sitecustomize.py
pytestmark = pytest.mark.skipif(not torch.distributed.is_available()
                                or not torch.distributed.is_gloo_available(),
                                reason="this torch has no gloo backend")


# ----------------------------------------------------------------------------- helpers

def _env(debug: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["LORAGUI_DIST_DEBUG_DIR"] = str(debug)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(RANK_RECORDER),
                                         env.get("PYTHONPATH", "")])
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
              "MASTER_PORT"):
        env.pop(k, None)
    return env


def _setup(tmp_path: Path) -> tuple[list[str], Path, Path]:
    images, masks = make_tiny_dataset(tmp_path / "data", n=8, size=32)
    base = make_tiny_base(tmp_path / "base.safetensors", width=4, depth=2)
    out = tmp_path / "run"
    debug = tmp_path / "debug"
    debug.mkdir()
    args = ["--images", str(images), "--masks", str(masks), "--out", str(out), "--base",
            str(base), "--crop-size", "32", "--batch-size", "4", "--rank", "8", "--alpha", "16",
            "--lr", "0.01", "--val-fraction", "0", "--steps-per-epoch", "10"]
    return args, out, debug


class Events:
    """JSON lines of a running process, read as they come."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.events: list[dict] = []
        self.other: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                self.other.append(line)
                continue
            with self.cond:
                self.events.append(ev)
                self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = 120) -> dict:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for ev in self.events:
                    if predicate(ev):
                        return ev
                left = end - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.thread.is_alive()):
                    raise AssertionError(f"event not seen; got {self.events[-3:]}")
                self.cond.wait(min(left, 0.5))

    def finish(self, timeout: float = 180) -> tuple[int, str]:
        rc = self.proc.wait(timeout)
        self.thread.join(10)
        return rc, self.proc.stderr.read()

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["event"] == kind]


def _start(cmd: list[str], env: dict[str, str]) -> Events:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return Events(proc)


def _ranks(debug: Path) -> list[dict]:
    return [json.loads((debug / f"rank{r}.json").read_text()) for r in (0, 1)]


# ----------------------------------------------------------------------------- tests

def test_parse_devices_and_forwarded_options(tmp_path, monkeypatch):
    plan = parse_devices("cpu,cpu")
    assert (plan.kind, plan.count, plan.child_device, plan.visible) == ("cpu", 2, "cpu", None)
    assert parse_devices(" cpu ").single_device() == "cpu"
    for bad, words in [("", "give all"), ("cpu,cuda:0", "not a mix"), ("cuda:x", "cuda:0"),
                       ("tpu", "cannot be used")]:
        with pytest.raises(DeviceError, match=words):
            parse_devices(bad)
    if not torch.cuda.is_available():
        for spec in ("all", "cuda:0,cuda:1"):
            with pytest.raises(DeviceError, match="no CUDA GPU"):
                parse_devices(spec)
    assert distributed.lr_scale(4) == pytest.approx(2.0)
    assert Dist.from_env({}) is None and Dist.from_env({"WORLD_SIZE": "1"}) is None
    d = Dist.from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert (d.rank, d.world_size, d.local_rank, d.is_main) == (1, 2, 1, False)
    e = Dist.from_env({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert d.step_seed(0, 5, 0) != e.step_seed(0, 5, 0)  # the ranks draw distinct crops
    assert d.step_seed(0, 5, 0) != d.step_seed(0, 6, 0) != d.step_seed(0, 6, 1)
    assert d.step_seed(0, 5, 0) == d.step_seed(0, 5, 0)  # resumable: a function of the step

    from loragui import cli, cli_train
    from loragui.engine.resources import bundled_sample_dirs

    args = cli.build_parser().parse_args(
        ["train", "--sample", "--out", "o", "--devices", "cpu,cpu", "--lr", "0.01", "--resume",
         "--events", "jsonl"])
    images, masks = map(str, bundled_sample_dirs())
    forwarded = cli_train.forwarded_options(args)
    assert forwarded == ["--images", images, "--masks", masks, "--out", "o", "--lr", "0.01",
                         "--resume", "--events", "jsonl"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(LoraGuiError, match="under torchrun"):
        cli_train.train_on_devices(args, cli_train.train_config(args))


def _agreement_worker(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
    os.environ.pop(distributed.ENV_BACKEND, None)
    d = Dist.from_env()
    d.start(torch.device("cpu"))
    out: dict = {"devices": d.devices, "backend": d.backend}
    a = torch.nn.Parameter(torch.zeros(2, 3))
    b = torch.nn.Parameter(torch.zeros(4))

    def grads(scale):
        a.grad = torch.full((2, 3), scale)
        b.grad = None if rank == 1 else torch.full((4,), scale)  # rank 1: b unused

    grads(rank + 1.0)
    o = d.reduce_step([a, b], rank + 1.0, stop=False, loss_bad=False, oom=False)
    out["good"] = [o.ok, o.loss, a.grad.flatten().tolist(), b.grad.tolist()]
    grads(7.0)
    o = d.reduce_step([a, b], 1.0, stop=rank == 1, loss_bad=False, oom=False)
    out["stop"] = [o.ok, o.stop, a.grad.flatten().tolist()[0]]  # gradients left as they were
    o = d.reduce_step([a, b], 1.0, stop=False, loss_bad=False, oom=rank == 1)
    out["oom"] = [o.ok, o.oom_ranks]
    o = d.reduce_step([a, b], float("nan") if rank == 0 else 1.0, stop=False,
                      loss_bad=rank == 0, oom=False)
    out["loss_bad"] = [o.ok, o.loss_bad]
    try:
        d.check(LoraGuiError("the disk is full") if rank == 1 else None, "at the end of epoch 3")
        out["check"] = None
    except Exception as exc:  # noqa: BLE001
        out["check"] = [type(exc).__name__, str(exc)]
    d.check(None, "at the end of epoch 4")  # all fine: nothing raised
    p = torch.nn.Parameter(torch.full((3,), float(rank + 5)))
    d.broadcast_parameters([p])
    out["broadcast"] = p.tolist()
    d.close()
    Path(folder, f"agree{rank}.json").write_text(json.dumps(out))


def test_ranks_agree_on_every_step_outcome(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_agreement_worker, args=(port, str(tmp_path)), nprocs=2)
    r0, r1 = (json.loads((tmp_path / f"agree{r}.json").read_text()) for r in (0, 1))
    assert r0["devices"] == ["cpu", "cpu"] and r0["backend"] == "gloo"
    # Averaged gradients (a missing gradient counts as zero) and the mean loss, on both ranks.
    for r in (r0, r1):
        assert r["good"] == [True, 1.5, [1.5] * 6, [0.5] * 4]
        assert r["stop"] == [False, True, 7.0]  # a stop on rank 1 stops rank 0 too
        assert r["oom"] == [False, [1]]  # both halve their batch
        assert r["loss_bad"] == [False, True]  # both back off
        assert r["broadcast"] == [5.0, 5.0, 5.0]  # rank 0's weights everywhere
    # A failed write on rank 1: rank 0 says which process and why; rank 1 ends quietly.
    assert r0["check"] == ["TrainingError", "training process 1 of 2 (cpu) failed at the end of "
                           "epoch 3: the disk is full"]
    assert r1["check"][0] == "AgreedFailure"


def test_devices_launcher_stop_then_torchrun_resume(tmp_path):
    """--devices cpu,cpu: both ranks stop on SIGINT at the same step with the same weights;
    torchrun -m loragui train --resume continues there and ends exactly where the
    uninterrupted run ends; one set of files; a good adapter."""
    args, out, debug = _setup(tmp_path)
    env = _env(debug)
    run = _start([sys.executable, "-m", "loragui", "train", *args, "--epochs", "12",
                  "--devices", "cpu,cpu", "--events", "jsonl"], env)
    started = run.wait_for(lambda e: e["event"] == "RunStarted")
    assert started["world_size"] == 2 and started["device"] == "cpu, cpu"
    assert started["batch_size"] == 4 and started["effective_batch_size"] == 8
    assert started["peak_lr"] == pytest.approx(0.01 * 2 ** 0.5)
    assert started["total_steps"] == 120 and started["steps_per_epoch"] == 10
    run.wait_for(lambda e: e["event"] == "StepEvent" and e["step"] >= 5)
    run.proc.send_signal(signal.SIGINT)  # Ctrl-C to the launcher: every rank stops
    rc, err = run.finish()
    assert rc == 0, err
    finished = run.events[-1]
    assert finished["event"] == "RunFinished" and finished["stopped"], run.events[-3:]
    stopped_at = finished["steps"]
    assert 5 <= stopped_at < 120
    assert max(e["step"] for e in run.of("StepEvent")) == stopped_at
    r0, r1 = _ranks(debug)
    assert r0["stopped"] and r1["stopped"] and r0["step"] == r1["step"] == stopped_at
    assert r0["digest"] == r1["digest"]  # only the trainable weights are synchronised: equal
    assert r0["pid"] != r1["pid"]
    assert "Traceback" not in err, err
    info = find_resumable(out)
    assert info is not None and info["step"] == stopped_at
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["status"] == "stopped" and run_json["world_size"] == 2

    # Resume with torchrun itself, as a user with their own launcher would.
    for f in debug.iterdir():
        f.unlink()
    resumed = _start([sys.executable, "-m", "torch.distributed.run", "--standalone",
                      "--nproc-per-node", "2", "-m", "loragui", "train", *args, "--epochs", "12",
                      "--device", "cpu", "--resume", "--events", "jsonl"], env)
    rc, err = resumed.finish()
    assert rc == 0, err
    started = resumed.of("RunStarted")[0]
    assert started["start_step"] == stopped_at and started["world_size"] == 2
    steps = [e["step"] for e in resumed.of("StepEvent")]
    assert steps == list(range(stopped_at + 1, 121))
    assert resumed.events[-1]["event"] == "RunFinished" and not resumed.events[-1]["stopped"]
    assert len(resumed.of("RunStarted")) == 1  # rank 1 reports nothing
    r0, r1 = _ranks(debug)
    assert r0["step"] == r1["step"] == 120 and r0["digest"] == r1["digest"]

    # The same run uninterrupted ends with the very same weights: the crops of each rank
    # follow from (seed, rank, step), so a resumed run draws what it would have drawn.
    ref_debug = tmp_path / "ref_debug"
    ref_debug.mkdir()
    ref_args = [str(tmp_path / "ref") if a == str(out) else a for a in args]
    ref = subprocess.run([sys.executable, "-m", "loragui", "train", *ref_args, "--epochs", "12",
                          "--devices", "cpu,cpu"], cwd=ROOT, env=_env(ref_debug),
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    assert "data-parallel training in 2 processes" in ref.stdout  # the text output, once
    assert ref.stdout.count("finished after 120 steps") == 1
    assert _ranks(ref_debug)[0]["digest"] == r0["digest"]

    # One run folder, written once by rank 0.
    assert {p.name for p in out.iterdir()} <= set(RUN_FILES) | {"previews", MARKER, LOCK}
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["status"] == "finished" and run_json["steps"] == 120
    dist_info = run_json["distributed"]
    assert dist_info["world_size"] == 2 and dist_info["backend"] == "gloo"
    assert dist_info["devices"] == ["cpu", "cpu"]
    assert dist_info["effective_batch_size"] == 8 == run_json["effective_batch_size"]
    assert dist_info["lr_scaling"] == "sqrt"
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 12
    from loragui.engine.predict import evaluate_folders

    result = evaluate_folders(args[1], args[3], base=args[7], adapter=str(out / "adapter"),
                              device="cpu")
    assert result["dice"] > 0.8, result


def test_a_rank_that_dies_ends_the_run_with_a_resumable_checkpoint(tmp_path):
    args, out, debug = _setup(tmp_path)
    run = _start([sys.executable, "-m", "loragui", "train", *args, "--epochs", "40",
                  "--devices", "cpu,cpu", "--events", "jsonl"], _env(debug))
    run.wait_for(lambda e: e["event"] == "EpochEvent" and e["epoch"] == 1)
    victim = json.loads((debug / "rank1.json").read_text())["pid"]
    os.kill(victim, signal.SIGKILL)
    rc, err = run.finish()
    assert rc == 1, err
    failed = run.events[-1]
    assert failed["event"] == "RunFailed", run.events[-3:]
    # rank 0 or the launcher may be the first to see the death: either says so
    assert "training process ended unexpectedly" in failed["message"], failed["message"]
    assert "resume" in failed["message"] and failed["output"].endswith("adapter")
    assert "training process 1 of 2 was killed by SIGKILL" in err
    info = find_resumable(out)
    assert info is not None and info["step"] >= 10
    assert f"step {info['step']}" in failed["message"]
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["status"] == "failed" and run_json["world_size"] == 2
