"""The training loop: learns, stops, resumes, writes its files."""

from __future__ import annotations

import csv
import json
import threading

import pytest
import torch

from loragui.engine.adapters import load_adapter
from loragui.engine.basemodel import load_model
from loragui.engine.events import (
    EpochEvent,
    LogEvent,
    RunFailed,
    RunFinished,
    RunStarted,
    StepEvent,
)
from loragui.engine.train import lr_factor, run_training
from tests.tiny import tiny_config


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


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """One tiny training (4 epochs x 5 steps, 2 previews), shared by the tests of what it
    reports and writes."""
    root = tmp_path_factory.mktemp("one_run")
    config = tiny_config(root, previews=2)
    base_before = (root / "base.safetensors").read_bytes()
    return config, collect(config), root / "run", base_before


def test_a_run_reports_its_size_first(one_run):
    _, events, _, _ = one_run
    assert isinstance(events[0], (RunStarted, LogEvent))
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.total_steps == 20 and started.n_val == 2 and started.n_train == 6


def test_a_run_reports_every_step_and_epoch(one_run):
    _, events, _, _ = one_run
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [s.step for s in steps] == list(range(1, 21))
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert [e.epoch for e in epochs] == [0, 1, 2, 3, 4]


def test_a_run_shows_validation_previews(one_run):
    _, events, _, _ = one_run
    last_epoch = [e for e in events if isinstance(e, EpochEvent)][-1]
    assert len(last_epoch.previews) == 2
    preview = last_epoch.previews[0]
    assert preview.image.dtype.name == "uint8"
    assert preview.prediction.shape == preview.mask.shape
    assert preview.predicted_objects is None and preview.true_objects is None  # not objects


def test_a_run_ends_finished_not_stopped(one_run):
    _, events, _, _ = one_run
    assert isinstance(events[-1], RunFinished) and not events[-1].stopped


def test_a_run_writes_its_metrics_and_record(one_run):
    _, events, run, _ = one_run
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    info = json.loads((run / "run.json").read_text())
    assert info["steps"] == 20 and info["best_epoch"] == events[-1].best_epoch


def test_a_run_writes_an_adapter_for_its_base(one_run):
    _, _, run, _ = one_run
    adapter = load_adapter(run / "adapter")
    assert adapter.config["r"] == 4 and adapter.config["loragui"]["base_sha256"]


def test_training_never_touches_the_base_model_file(one_run):
    config, _, _, base_before = one_run
    assert open(config.base, "rb").read() == base_before


def test_tiny_dataset_overfits_to_high_dice(tmp_path):
    config = tiny_config(tmp_path, base_width=8, epochs=12, steps_per_epoch=10, lr=1e-2,
                         val_fraction=0.0, rank=8, alpha=16)
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


def test_a_missing_device_fails_cleanly(tmp_path):
    config = tiny_config(tmp_path, device="cuda:7" if not torch.cuda.is_available() else "cuda:99")
    events = list(run_training(config))
    assert isinstance(events[-1], RunFailed) and "cuda" in events[-1].message.lower()
    assert not events[-1].details  # a user error, not a crash


def test_an_empty_image_folder_fails_cleanly(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = tiny_config(tmp_path, images=str(empty))
    events = list(run_training(config))
    assert isinstance(events[-1], RunFailed) and "empty" in events[-1].message


def test_weights_trained_whole_keep_the_base_values_at_scale_zero(tmp_path):
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


def test_weights_trained_whole_learn_at_a_nonzero_scale(tmp_path):
    config = tiny_config(tmp_path, epochs=1, whole_lr_scale=0.5, val_fraction=0.0)
    collect(config)
    base, _ = load_model(config.base)
    tensors = load_adapter(tmp_path / "run" / "adapter").tensors
    assert not torch.equal(tensors["head.weight"], base.state_dict()["head.weight"])


def test_a_run_compiles_only_where_and_when_it_pays():
    from loragui.engine.config import TrainConfig
    from loragui.engine.setup_steps import compiles

    c = TrainConfig()
    assert compiles(c, "cuda", c.compile_from)
    assert not compiles(c, "cuda", c.compile_from - 1)  # a short run trains uncompiled
    assert not compiles(c, "cpu", 10 * c.compile_from)
    assert not compiles(c, "mps", 10 * c.compile_from)
    assert compiles(TrainConfig(compile_from=0), "cuda", 1)
    assert not compiles(TrainConfig(compile=False, compile_from=0), "cuda", 10**9)
