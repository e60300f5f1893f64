"""Training on a CUDA GPU: the compiled step and the plain one train the same model.
Skipped without a CUDA GPU."""

from __future__ import annotations

import pytest
import torch

from loragui.engine.events import EpochEvent, LogEvent, RunFinished
from loragui.engine.train import run_training
from tests.tiny import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _validation_dice(config) -> tuple[list[float], list[str]]:
    dice, warnings = [], []
    for ev in run_training(config):
        if isinstance(ev, EpochEvent) and ev.epoch > 0:
            dice.append(ev.dice)
        if isinstance(ev, LogEvent) and ev.level == "warning":
            warnings.append(ev.message)
        assert not isinstance(ev, RunFinished) or not ev.stopped
    return dice, warnings


def test_the_compiled_step_trains_as_the_plain_one(tmp_path):
    compiled, warnings = _validation_dice(tiny_config(tmp_path, device="cuda", compile_from=0, out=str(tmp_path / "a")))
    plain, _ = _validation_dice(tiny_config(tmp_path, device="cuda", compile=False,
                                            out=str(tmp_path / "b")))
    assert not [w for w in warnings if "compiling" in w], warnings
    assert len(compiled) == len(plain) == 4
    # bf16 autocast and kernel choices differ between the two: close, not equal
    assert compiled == pytest.approx(plain, abs=0.05)


def test_a_step_that_fails_to_compile_trains_plain_and_says_so(tmp_path, monkeypatch):
    def broken(model, *args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("no compiler here")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    dice, warnings = _validation_dice(tiny_config(tmp_path, device="cuda", compile_from=0))
    assert len(dice) == 4
    assert any("compiling the training step failed" in w and "no compiler here" in w
               for w in warnings), warnings

