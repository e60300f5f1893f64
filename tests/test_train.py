"""The training loop: learns, stops, resumes, writes its files."""

from __future__ import annotations

import csv
import json
import threading

import pytest
import torch

from loragui.engine.adapters import load_adapter
from loragui.engine.basemodel import load_model
from loragui.engine.config import TrainConfig
from loragui.engine.events import (
    EpochEvent,
    LogEvent,
    RunFailed,
    RunFinished,
    RunStarted,
    StepEvent,
)
from loragui.engine.train import lr_factor, run_training
from tests.messy import make_tiny_dataset
from tests.tiny import make_tiny_base


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    images, masks = make_tiny_dataset(tmp_path / "data", n=8, size=32)
    base = make_tiny_base(tmp_path / "base.safetensors", width=8)
    values = dict(images=str(images), masks=str(masks), out=str(tmp_path / "run"), base=str(base),
                  rank=4, alpha=8, epochs=4, steps_per_epoch=5, batch_size=4, crop_size=32,
                  val_fraction=0.25, device="cpu", lr=1e-2, previews=2)
    values.update(overrides)
    return TrainConfig(**values)


def collect(config, stop=None):
    events = list(run_training(config, stop))
    failed = [e for e in events if isinstance(e, RunFailed)]
    assert not failed, failed[0].message + failed[0].details
    return events


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(99, 100, 10) < 0.05
    values = [lr_factor(s, 100, 10) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_events_files_and_base_unchanged(tmp_path):
    config = tiny_config(tmp_path)
    events = collect(config)
    assert isinstance(events[0], (RunStarted, LogEvent))
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.total_steps == 20 and started.n_val == 2 and started.n_train == 6
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [s.step for s in steps] == list(range(1, 21))
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert [e.epoch for e in epochs] == [0, 1, 2, 3, 4]
    assert epochs[-1].previews and epochs[-1].previews[0].image.dtype.name == "uint8"
    assert epochs[-1].previews[0].prediction.shape == epochs[-1].previews[0].mask.shape
    finished = events[-1]
    assert isinstance(finished, RunFinished) and not finished.stopped
    run = tmp_path / "run"
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    info = json.loads((run / "run.json").read_text())
    assert info["steps"] == 20 and info["best_epoch"] == finished.best_epoch
    adapter = load_adapter(run / "adapter")
    assert adapter.config["r"] == 4 and adapter.config["loragui"]["base_sha256"]
    # training never touches the base model file
    model, _ = load_model(config.base)
    fresh, _ = load_model(config.base)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_tiny_dataset_overfits_to_high_dice(tmp_path):
    config = tiny_config(tmp_path, epochs=12, steps_per_epoch=10, lr=1e-2, val_fraction=0.0,
                         rank=8, alpha=16)
    events = collect(config)
    finished = events[-1]
    from loragui.engine.predict import evaluate_folders

    result = evaluate_folders(config.images, config.masks, base=config.base,
                              adapter=finished.output, device="cpu")
    assert result["dice"] > 0.9, result


def test_stop_within_a_step_keeps_adapter_and_resume_continues(tmp_path):
    config = tiny_config(tmp_path, epochs=4, steps_per_epoch=5)
    stop = threading.Event()
    events = []
    for ev in run_training(config, stop):
        events.append(ev)
        if isinstance(ev, StepEvent) and ev.step == 7:
            stop.set()
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.stopped
    last_step = max(e.step for e in events if isinstance(e, StepEvent))
    assert last_step == 7  # not one step more
    assert load_adapter(tmp_path / "run" / "adapter").tensors
    config.resume = True
    resumed = collect(config)
    started = next(e for e in resumed if isinstance(e, RunStarted))
    assert started.start_step == 7
    steps = [e.step for e in resumed if isinstance(e, StepEvent)]
    assert steps == list(range(8, 21))
    assert [e.epoch for e in resumed if isinstance(e, EpochEvent)] == [2, 3, 4]


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    straight = tiny_config(tmp_path / "a")
    collect(straight)
    interrupted = tiny_config(tmp_path / "b")
    stop = threading.Event()
    for ev in run_training(interrupted, stop):
        if isinstance(ev, EpochEvent) and ev.epoch == 2:
            stop.set()
    interrupted.resume = True
    collect(interrupted)
    a = load_adapter(tmp_path / "a" / "run" / "adapter").tensors
    b = load_adapter(tmp_path / "b" / "run" / "adapter").tensors
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_full_training_writes_base_model(tmp_path):
    config = tiny_config(tmp_path, full=True, base=None, width=4, depth=2, epochs=2)
    events = collect(config)
    finished = events[-1]
    assert finished.output.endswith("model.safetensors")
    model, info = load_model(finished.output)
    assert info.architecture.width == 4 and info.preprocessing["method"]


def test_bad_inputs_fail_cleanly(tmp_path):
    config = tiny_config(tmp_path, device="cuda:7" if not torch.cuda.is_available() else "cuda:99")
    events = list(run_training(config))
    assert isinstance(events[-1], RunFailed) and "cuda" in events[-1].message.lower()
    assert not events[-1].details  # a user error, not a crash
    empty = tmp_path / "empty"
    empty.mkdir()
    config = tiny_config(tmp_path, images=str(empty))
    events = list(run_training(config))
    assert isinstance(events[-1], RunFailed) and "empty" in events[-1].message


def test_weights_trained_whole_learn_at_their_own_rate(tmp_path):
    """--whole-lr-scale sets the learning rate of biases and --train-modules relative to
    --lr: at 0 they keep the base model's values while the LoRA factors learn."""
    config = tiny_config(tmp_path, epochs=1, whole_lr_scale=0.0, val_fraction=0.0)
    collect(config)
    base, _ = load_model(config.base)
    base_weights = base.state_dict()
    tensors = load_adapter(tmp_path / "run" / "adapter").tensors
    whole = {k: v for k, v in tensors.items() if ".lora_" not in k}
    assert any(k.startswith("head.") for k in whole) and any(".bias" in k for k in whole)
    for name, value in whole.items():
        assert torch.equal(value, base_weights[name.replace(".base_layer", "")]), name
    assert any(v.abs().sum() > 0 for k, v in tensors.items() if ".lora_B" in k)

    config = tiny_config(tmp_path / "again", epochs=1, whole_lr_scale=0.5, val_fraction=0.0)
    collect(config)
    tensors = load_adapter(tmp_path / "again" / "run" / "adapter").tensors
    assert not torch.equal(tensors["head.weight"], base_weights["head.weight"])
