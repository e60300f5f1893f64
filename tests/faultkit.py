"""What the fault tests share: running a training and reading its events, and the
injected faults (a failing forward pass, a full disk)."""

from __future__ import annotations

import errno
from pathlib import Path

import torch

from loragui.engine.config import TrainConfig
from loragui.engine.events import (
    LogEvent,
    RunFailed,
    RunFinished,
    StepEvent,
)
from loragui.engine.train import run_training
from loragui.engine.unet import UNet


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
