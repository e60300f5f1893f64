"""``loragui train --devices``: one training process per device, started through
PyTorch's own launcher.

:func:`launch` runs torchrun (``torch.distributed.run``'s ``run()``, standalone, in
the ``loragui`` process) with one process per device, each running ``python -m
loragui train`` with the options given (minus ``--devices``, plus ``--device cuda``
or ``--device cpu``); each process is one rank of the run (see :mod:`.distributed`).
Ctrl-C / SIGTERM to ``loragui`` reach every process (they stop after the current
step); rank 0's exit status is the command's (:func:`record_status`).
``--devices cpu,cpu`` runs two CPU processes with gloo: that is how the tests cover
this path on machines without GPUs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import DeviceError

ENV_STATUS = "LORAGUI_LAUNCH_STATUS"  # set by launch(): rank 0's exit status goes there
SHUTDOWN_TIMEOUT_S = 120  # torchrun waits this long for stopped processes before SIGKILL


@dataclass
class DevicePlan:
    """What ``--devices`` asks for: ``count`` processes on ``kind`` ("cuda" or "cpu")."""

    kind: str
    count: int
    visible: str | None = None  # CUDA_VISIBLE_DEVICES for the processes (None: unchanged)
    names: list[str] = field(default_factory=list)

    @property
    def child_device(self) -> str:
        """``--device`` for every process: each takes cuda:LOCAL_RANK (or the CPU)."""
        return self.kind

    def single_device(self) -> str | None:
        """The ``--device`` to train with in this process when one device is asked for."""
        return self.names[0] if self.count == 1 else None


def parse_devices(spec: str) -> DevicePlan:
    """``all`` (every CUDA GPU), ``cuda:0,cuda:2``, or ``cpu,cpu`` (gloo, for tests)."""
    text = (spec or "").strip().lower()
    if text == "all":
        if not torch.cuda.is_available():
            raise DeviceError("--devices all: no CUDA GPU is available here")
        n = torch.cuda.device_count()
        return DevicePlan("cuda", n, None, [f"cuda:{i}" for i in range(n)])
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise DeviceError("--devices: give all, a list such as cuda:0,cuda:1, or cpu,cpu")
    if all(s == "cpu" for s in items):
        return DevicePlan("cpu", len(items), None, items)
    indices = []
    for s in items:
        if not s.startswith("cuda:"):
            raise DeviceError(f"--devices: {s!r} cannot be used here: list CUDA GPUs as "
                              "cuda:0,cuda:1 (or cpu,cpu), not a mix")
        try:
            indices.append(int(s.split(":", 1)[1]))
        except ValueError:
            raise DeviceError(f"--devices: {s!r}: write cuda:0, cuda:1, ...") from None
    if len(set(indices)) != len(indices):
        raise DeviceError("--devices: each GPU can be listed once")
    if not torch.cuda.is_available():
        raise DeviceError("--devices: no CUDA GPU is available here")
    count = torch.cuda.device_count()
    missing = [i for i in indices if not 0 <= i < count]
    if missing:
        raise DeviceError(f"--devices: there is no cuda:{missing[0]}: this machine has {count} "
                          f"CUDA device(s) (cuda:0 … cuda:{count - 1})")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = [e.strip() for e in visible.split(",")] if visible else None
    mapped = [entries[i] if entries and i < len(entries) else str(i) for i in indices]
    return DevicePlan("cuda", len(indices), ",".join(mapped), [f"cuda:{i}" for i in indices])


@dataclass
class LaunchResult:
    status: int | None  # rank 0's exit status as it reported it; None: it never did
    failures: dict[int, str]  # rank -> how that process ended, for those that failed
    interrupted: bool  # stopped waiting after a second Ctrl-C


def launch(plan: DevicePlan, train_args: Sequence[str]) -> LaunchResult:
    """Run ``python -m loragui train <train_args> --device <kind>`` in ``plan.count``
    processes through torchrun (``torch.distributed.run``, standalone), here in this
    process: torchrun's agent forwards Ctrl-C / SIGTERM to every process, which stop
    after their current step, and ends them all if one dies."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    fd, status_path = tempfile.mkstemp(prefix="loragui-status-", suffix=".txt")
    os.close(fd)
    os.unlink(status_path)
    env = {
        "NCCL_NVLS_ENABLE": "0",
        ENV_STATUS: status_path,
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT_S),
        "PYTHONUNBUFFERED": "1",
    }
    if plan.visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = plan.visible
    # The processes import this very loragui (a source checkout too), not another install.
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in paths if p != package_root])
    if "OMP_NUM_THREADS" not in os.environ:  # torchrun would set 1 (and warn)
        cores = os.cpu_count() or 1
        env["OMP_NUM_THREADS"] = str(max(1, cores // plan.count) if plan.kind == "cpu" else 1)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    argv = ["--standalone", "--nproc-per-node", str(plan.count), "-m", "loragui", "train",
            *train_args, "--device", plan.child_device]
    failures: dict[int, str] = {}
    interrupted = False
    # Until torchrun's agent installs its own handlers (which forward the signal to the
    # processes), a SIGTERM ends the launch like Ctrl-C.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    # torchrun's agent logs each step of a shutdown as a warning; loragui says what happened.
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith("torch.distributed")]
    log_levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        try:
            run(parse_args(argv))
        except ChildFailedError as exc:
            for rank, failure in exc.failures.items():
                failures[int(rank)] = _describe_exit(failure.exitcode)
        except (SignalException, KeyboardInterrupt):
            interrupted = True
        status = None
        with contextlib.suppress(OSError, ValueError):
            with open(status_path) as f:
                status = int(f.read().strip())
    finally:
        for log, level in zip(loggers, log_levels, strict=True):
            log.setLevel(level)
        if previous is not None:
            with contextlib.suppress(Exception):
                signal.signal(signal.SIGTERM, previous)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        with contextlib.suppress(OSError):
            os.unlink(status_path)
    return LaunchResult(status, failures, interrupted)


def record_status(status: int) -> None:
    """In a process started by :func:`launch`: rank 0 says it reported its outcome."""
    path = os.environ.get(ENV_STATUS)
    if not path or os.environ.get("RANK", "0") != "0":
        return
    with contextlib.suppress(OSError):
        with open(path, "w") as f:
            f.write(str(int(status)))


def in_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "ended"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"

