"""Checkpoints are parsed against their declaration: a hand-damaged field is one clear
message on --resume and a warning (not a failure) for a fresh run into that folder; a
resume with settings that shape the adapter differently is one clear message."""

from __future__ import annotations

import torch

from loragui.engine.checkpoint import Checkpoint, find_resumable
from tests.messy import make_tiny_dataset
from tests.test_settings_cli import loragui, refused
from tests.tiny import make_tiny_base


def _train(tmp_path, *extra):
    images, masks = make_tiny_dataset(tmp_path / "data", n=6, size=32)
    base = tmp_path / "base.safetensors"
    if not base.exists():
        make_tiny_base(base)
    return loragui("train", "--images", images, "--masks", masks, "--base", base, "--device",
                   "cpu", "--out", tmp_path / "run", "--steps", 4, "--steps-per-epoch", 2,
                   "--batch-size", 2, "--crop-size", 32, *extra)


def _damage(run, **fields):
    path = run / "checkpoint.pt"
    payload = torch.load(path, weights_only=True)
    payload.update(fields)
    torch.save(payload, path)


def test_a_damaged_field_is_refused_on_resume_and_reported_by_a_fresh_run(tmp_path):
    assert _train(tmp_path).returncode == 0
    run = tmp_path / "run"
    _damage(run, step="3", total_steps=10)
    assert find_resumable(run) is None  # the window offers nothing to resume
    line = refused(_train(tmp_path, "--resume"), "checkpoint", "'step'", "wrong type")
    assert "delete it to start over" in line
    fresh = _train(tmp_path, "--overwrite")  # loragui's own earlier run: replaced when asked
    assert fresh.returncode == 0, fresh.stderr
    assert "'step' has the wrong type" in fresh.stdout and "starts over" in fresh.stdout
    assert Checkpoint.load(run).step == 4  # replaced by this run's own


def test_damaged_settings_inside_a_checkpoint_are_refused_naming_the_setting(tmp_path):
    assert _train(tmp_path).returncode == 0
    run = tmp_path / "run"
    config = Checkpoint.load(run).config | {"rank": 1e300}
    _damage(run, config=config)
    refused(_train(tmp_path, "--resume"), "checkpoint", "rank")


def test_resuming_with_another_rank_is_one_message_naming_both(tmp_path):
    assert _train(tmp_path, "--rank", 2).returncode == 0
    line = refused(_train(tmp_path, "--resume", "--rank", 8), "--rank 2", "--rank 8")
    assert "settings of the first run" in line
