"""How long a default run is: the steps of an epoch, capped on the CPU."""

from __future__ import annotations

from loragui.engine.events import RunFinished, RunStarted
from loragui.engine.schedule import CPU_MAX_STEPS_PER_EPOCH, default_steps_per_epoch
from loragui.engine.train import run_training
from tests.tiny import tiny_config

# 14 images of 1024², crops of 128², batch 8: one crop per 128² of image is 112 steps.
LARGE = dict(n_train=14, batch_size=8, crop_size=128, mean_area=1024.0 ** 2)


def test_an_epoch_of_large_images_is_capped_on_the_cpu_only():
    assert default_steps_per_epoch(**LARGE, device_type="cuda") == 112
    assert default_steps_per_epoch(**LARGE, device_type="mps") == 112
    assert default_steps_per_epoch(**LARGE, device_type="cpu") == CPU_MAX_STEPS_PER_EPOCH


def test_small_sets_keep_their_epochs_and_a_set_length_keeps_its_validations():
    # 26 images of 256²: 4 crops each, 13 steps, under the cap
    assert default_steps_per_epoch(26, 8, 128, 256.0 ** 2, device_type="cpu") == 13
    assert default_steps_per_epoch(2, 8, 128, 64.0 ** 2, device_type="cpu") == 10  # at least
    # --steps 4000: at most 40 validations, whatever the cap
    assert default_steps_per_epoch(**LARGE, total_steps=4000, device_type="cpu") == 100


def test_a_cpu_run_plans_its_capped_epochs(tmp_path):
    # 6 training images of 32², crops of 8², batch 1: 96 steps an epoch uncapped
    config = tiny_config(tmp_path, steps_per_epoch=None, crop_size=8, batch_size=1, epochs=1)
    events = list(run_training(config))
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.steps_per_epoch == CPU_MAX_STEPS_PER_EPOCH
    assert started.total_steps == CPU_MAX_STEPS_PER_EPOCH
    assert isinstance(events[-1], RunFinished) and events[-1].steps == CPU_MAX_STEPS_PER_EPOCH
