"""Runs that end when they stop improving, and the time they took to reach their best."""

from __future__ import annotations

from pathlib import Path

import pytest

from loragui.engine.checkpoint import Checkpoint, find_resumable
from loragui.engine.early_stop import MARGIN, EarlyStop, patience_for
from loragui.engine.events import EpochEvent, RunFailed, RunFinished, StepEvent
from loragui.engine.runrecord import read_metrics, read_run_record, time_to_quality
from loragui.engine.train import run_training
from tests.tiny import tiny_config

# 12 planned epochs of 5 steps at a learning rate too small to change anything: the
# validation Dice is flat from the first epoch, so the rule (patience 3) ends the run
# after epoch 4 of 12.
PLATEAU = dict(epochs=12, steps_per_epoch=5, lr=1e-9)


def collect(config):
    events = list(run_training(config))
    failed = [e for e in events if isinstance(e, RunFailed)]
    assert not failed, failed[0].message + failed[0].details
    return events


# ------------------------------------------------------------------ the rule


def test_patience_is_a_share_of_the_planned_validations():
    assert patience_for(40) == 10
    assert patience_for(100) == 25
    assert patience_for(2) == 3  # never fewer than three


def test_the_rule_ends_after_patience_validations_without_a_real_rise():
    rule = EarlyStop(patience=3)
    assert not rule.update(1, 0.50)
    assert not rule.update(2, 0.60)  # a rise: the count starts again
    assert not rule.update(3, 0.60 + MARGIN / 2)  # within the margin: no improvement
    assert not rule.update(4, 0.59)
    assert rule.update(5, 0.60)
    assert (rule.best, rule.best_epoch, rule.waited) == (0.60, 2, 3)
    assert rule.reason(0.6025, 3) == "no improvement for 3 validations; best Dice 0.603 at epoch 3"


def test_the_rule_never_ends_without_a_dice_and_keeps_its_state():
    rule = EarlyStop(patience=3)
    for epoch in range(1, 10):
        assert not rule.update(epoch, None)
    rule.update(10, 0.7)
    rule.update(11, 0.7)
    again = EarlyStop.from_state(rule.state_dict())
    assert again == rule
    assert not again.update(12, 0.7) and again.update(13, 0.7)


def test_time_to_quality_is_the_first_epoch_within_the_margin_of_the_best():
    history = [{"epoch": 0, "step": 0, "dice": 0.9, "elapsed": 1.0},
               {"epoch": 1, "step": 5, "dice": 0.5, "elapsed": 2.0},
               {"epoch": 2, "step": 10, "dice": 0.795, "elapsed": 3.0},
               {"epoch": 3, "step": 15, "dice": 0.80, "elapsed": 4.0}]
    ttq = time_to_quality(history, 0.80)
    assert ttq == {"within": 0.01, "seconds": 3.0, "epoch": 2, "step": 10, "dice": 0.795}
    assert time_to_quality(history, None) is None


# ------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def plateau_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("plateau")
    config = tiny_config(root, **PLATEAU)
    return config, collect(config)


def test_a_run_whose_validation_plateaus_ends_early(plateau_run):
    config, events = plateau_run
    finished = events[-1]
    assert isinstance(finished, RunFinished) and not finished.stopped
    assert finished.early_stopped and finished.steps == 20  # epoch 4 of 12
    assert finished.reason == (f"no improvement for 3 validations; best Dice "
                               f"{finished.best_dice:.3f} at epoch {finished.best_epoch}")
    assert max(e.step for e in events if isinstance(e, StepEvent)) == 20
    record = read_run_record(config.out)
    assert record["status"] == "finished" and record["early_stopped"]
    assert record["reason"] == finished.reason
    assert record["steps"] == 20 and record["total_steps"] == 60
    assert record["early_stop"]["ended"] and record["early_stop"]["patience"] == 3
    assert (Path(config.out) / "adapter").is_dir()  # the best adapter is kept
    # An ended run is not offered for resuming.
    assert find_resumable(config.out) is None


def test_each_validation_reports_the_time_since_the_start(plateau_run):
    config, events = plateau_run
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    elapsed = [e.elapsed for e in epochs]
    assert elapsed[0] > 0 and elapsed == sorted(elapsed) and len(set(elapsed)) == len(elapsed)
    rows = read_metrics(config.out)
    assert [float(r["elapsed"]) for r in rows] == pytest.approx(elapsed[1:])
    record = read_run_record(config.out)
    ttq = record["time_to_quality"]
    first = next(e for e in epochs[1:] if e.dice >= record["best"]["dice"] - 0.01)
    assert ttq["epoch"] == first.epoch and ttq["seconds"] == pytest.approx(first.elapsed)


def test_no_early_stop_runs_to_the_maximum(tmp_path):
    config = tiny_config(tmp_path, **PLATEAU, early_stop=False)
    finished = collect(config)[-1]
    assert finished.steps == 60 and not finished.early_stopped
    assert finished.reason == "reached the maximum of 60 steps (12 epochs)"
    record = read_run_record(config.out)
    assert not record["early_stopped"] and record["early_stop"] is None


def test_resume_after_a_kill_keeps_the_early_stop_state(tmp_path, plateau_run):
    _, straight = plateau_run
    config = tiny_config(tmp_path, **PLATEAU)
    for ev in run_training(config):  # killed right after epoch 2 was reported
        if isinstance(ev, EpochEvent) and ev.epoch == 2:
            before = ev.elapsed
            break
    saved = Checkpoint.load(config.out).early_stop
    assert saved["waited"] == 1 and not saved["ended"]
    config.resume = True
    resumed = collect(config)
    assert [e.epoch for e in resumed if isinstance(e, EpochEvent)] == [3, 4]
    assert resumed[-1].early_stopped and resumed[-1].steps == straight[-1].steps == 20
    # The time since the start counts the part before the kill too.
    assert next(e.elapsed for e in resumed if isinstance(e, EpochEvent)) > before


def test_a_run_resumed_without_the_rule_goes_on_to_the_maximum(tmp_path):
    config = tiny_config(tmp_path, **PLATEAU)
    assert collect(config)[-1].steps == 20
    config.resume, config.early_stop = True, False
    finished = collect(config)[-1]
    assert finished.steps == 60 and not finished.early_stopped
