"""--init-adapter: a warm start from an adapter's tensors, refused when it does not fit."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from loragui.engine.adapters import load_adapter, write_adapter
from loragui.engine.errors import LoraGuiError
from loragui.engine.formats import PEFT_PREFIX
from loragui.engine.predict import load_for_inference
from loragui.engine.train import Trainer, run_training
from tests.tiny import make_tiny_base, tiny_config


def _train(config):
    events = list(run_training(config))
    assert type(events[-1]).__name__ == "RunFinished", events[-1]
    return events


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run's folder (its adapter trained 2 epochs) and its settings."""
    tmp = tmp_path_factory.mktemp("init")
    config = tiny_config(tmp, epochs=2, early_stop=False)
    _train(config)
    return tmp, config


def _first_output(config, batch):
    """The model's output on ``batch`` as the run's first step would see it."""
    trainer = Trainer(config, threading.Event())
    try:
        for _ in trainer._setup():
            pass
        trainer.model.eval()
        with torch.no_grad():
            return trainer.model(batch).float()
    finally:
        trainer.release()


def test_a_warm_start_begins_with_the_adapters_output(trained, tmp_path):
    tmp, config = trained
    adapter = tmp / "run" / "adapter"
    batch = torch.rand(2, 3, 32, 32)
    reference, _, _ = load_for_inference(config.base, adapter)
    reference.eval()
    with torch.no_grad():
        expected = reference(batch)
    single = tmp_path / "single.safetensors"  # the same adapter as one file
    loaded = load_adapter(adapter)
    write_adapter({PEFT_PREFIX + k: v for k, v in loaded.tensors.items()}, loaded.config, single,
                  single_file=True)
    for given in (adapter, tmp / "run", single):  # an adapter folder, a run folder, a file
        out = _first_output(tiny_config(tmp, out=str(tmp_path / f"from_{given.name}"), init_adapter=str(given)),
                            batch)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    # without it the run starts from the base alone, whose output differs
    cold = _first_output(tiny_config(tmp, out=str(tmp_path / "cold")), batch)
    assert not torch.allclose(cold, expected, atol=1e-3)


def test_a_warm_start_has_a_fresh_schedule_and_records_its_adapter(trained, tmp_path):
    tmp, config = trained
    out = tmp_path / "warm"
    events = _train(tiny_config(tmp, out=str(out), init_adapter=str(tmp / "run"), epochs=1))
    started = next(e for e in events if type(e).__name__ == "RunStarted")
    assert started.start_step == 0
    record = json.loads((out / "run.json").read_text())
    assert record["init_adapter"]["name"] == "run"
    assert record["init_adapter"]["run"] == str(tmp / "run")
    assert record["steps"] == 5  # one epoch of 5 steps, from step 0
    # the epoch-0 Dice is the starting adapter's, not the base model's
    first = json.loads((tmp / "run" / "run.json").read_text())
    assert record["base_dice"] == pytest.approx(first["best"]["dice"], abs=1e-6)
    adapter_cfg = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["loragui"]["training"]["init_adapter"] == "run"  # a name, not a path


@pytest.mark.parametrize(("overrides", "words"), [
    ({"rank": 2}, "its rank is 4, this run's is 2: train with --rank 4 or without --init-adapter"),
    ({"alpha": 4}, "its alpha is 8, this run's is 4: train with --alpha 8"),
    ({"rslora": True}, "without --rslora"),
    ({"train_bias": False}, "without --no-train-bias"),
    ({"train_modules": []}, "it trains head whole, this run none: train with --train-modules head"),
    ({"targets": ["down.*"]}, "with --targets *"),
    ({"resume": True}, "cannot be combined with --resume"),
    ({"full": True}, "cannot be combined with --full"),
])
def test_an_adapter_that_does_not_fit_the_settings_is_refused(trained, tmp_path, overrides,
                                                              words):
    tmp, _ = trained
    config = tiny_config(tmp, out=str(tmp_path / "r"), init_adapter=str(tmp / "run"),
                         **overrides)
    trainer = Trainer(config, threading.Event())
    try:
        with pytest.raises(LoraGuiError) as caught:
            for _ in trainer._setup():
                pass
    finally:
        trainer.release()
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_adapter_of_another_base_is_refused(trained, tmp_path):
    tmp, _ = trained
    other = make_tiny_base(tmp_path / "other.safetensors", seed=3)
    config = tiny_config(tmp, out=str(tmp_path / "r"), init_adapter=str(tmp / "run"),
                         base=str(other))
    events = list(run_training(config))
    failed = events[-1]
    assert type(failed).__name__ == "RunFailed"
    assert "made for base model base.safetensors" in failed.message
    assert "not other.safetensors" in failed.message


def test_a_stopped_warm_start_resumes_from_its_checkpoint(trained, tmp_path):
    from loragui.engine.checkpoint import find_resumable
    from loragui.engine.config import TrainConfig

    tmp, _ = trained
    out = tmp_path / "warm"
    stop = threading.Event()
    config = tiny_config(tmp, out=str(out), init_adapter=str(tmp / "run"), epochs=2)
    for ev in run_training(config, stop):
        if type(ev).__name__ == "EpochEvent" and ev.epoch == 1:
            stop.set()
    info = find_resumable(out)
    assert info is not None and info["config"]["init_adapter"] is None
    events = _train(TrainConfig.from_dict(info["config"]))
    started = next(e for e in events if type(e).__name__ == "RunStarted")
    assert started.start_step == 5 and events[-1].steps == 10


def test_a_warm_start_keeps_its_adapter_unless_an_epoch_beats_it(trained, tmp_path):
    """With a learning rate too small to change anything, no epoch beats epoch 0 (the
    initial adapter): the run's adapter is the initial one, its best epoch 0."""
    tmp, config = trained
    out = tmp_path / "again"
    events = _train(tiny_config(tmp, out=str(out), init_adapter=str(Path(config.out) / "adapter"),
                                epochs=2, early_stop=False, lr=1e-12))
    finished = events[-1]
    assert finished.best_epoch == 0
    assert finished.best_dice == finished.base_dice
    first, again = (load_file(Path(d) / "adapter" / "adapter_model.safetensors")
                    for d in (config.out, out))
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
