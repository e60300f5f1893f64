"""The real ``loragui`` command line, in subprocesses, on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.messy import make_tiny_dataset
from tests.tiny import make_tiny_base


def loragui(*args, check=True):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "loragui", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_train_evaluate_predict_merge_info(tmp_path):
    images, masks = make_tiny_dataset(tmp_path / "data", n=8, size=32)
    base = make_tiny_base(tmp_path / "base.safetensors", width=8)
    run = tmp_path / "run"
    p = loragui("train", "--images", images, "--masks", masks, "--out", run, "--base", base,
                "--epochs", 3, "--steps-per-epoch", 4, "--batch-size", 4, "--crop-size", 32,
                "--device", "cpu", "--rank", 4)
    assert p.stdout.count("epoch ") >= 3 and "base model alone" in p.stdout
    assert "IoU" in p.stdout and " at 0:00:" in p.stdout  # each validation: time since start
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert (run / "metrics.csv").read_text().count("\n") == 4
    info = json.loads((run / "run.json").read_text())
    assert info["steps"] == 12

    p = loragui("evaluate", "--images", images, "--masks", masks, "--base", base, "--adapter",
                run / "adapter", "--device", "cpu", "--json")
    result = json.loads(p.stdout)
    assert result["images"] == 8 and 0 <= result["dice"] <= 1 and "iou_pooled" in result

    out = tmp_path / "pred"
    loragui("predict", "--images", images, "--out", out, "--base", base, "--adapter", run / "adapter",
            "--device", "cpu")
    written = sorted(p.name for p in out.glob("*.png"))  # and loragui's marker
    assert written == sorted(p.stem + ".png" for p in images.iterdir())
    first = np.array(Image.open(out / written[0]))
    assert first.shape == (32, 32) and set(np.unique(first)) <= {0, 255}

    merged = tmp_path / "merged.safetensors"
    loragui("merge", "--adapter", run / "adapter", "--base", base, "--out", merged)
    p = loragui("evaluate", "--images", images, "--masks", masks, "--base", merged, "--device", "cpu",
                "--json")
    assert json.loads(p.stdout)["dice"] == result["dice"]

    p = loragui("info", run / "adapter", "--json")
    assert json.loads(p.stdout)["kind"] == "adapter"
    p = loragui("info", merged)
    assert "merged model" in p.stdout


def test_train_says_why_a_run_ended_early(tmp_path):
    images, masks = make_tiny_dataset(tmp_path / "data", n=8, size=32)
    base = make_tiny_base(tmp_path / "base.safetensors")
    common = ["--images", images, "--masks", masks, "--base", base, "--epochs", 12,
              "--steps-per-epoch", 2, "--batch-size", 2, "--crop-size", 32, "--device", "cpu",
              "--lr", "1e-9", "--previews", 0]  # a flat validation Dice
    p = loragui("train", *common, "--out", tmp_path / "a")
    assert "ended early: no improvement for 3 validations; best Dice" in p.stdout
    assert json.loads((tmp_path / "a" / "run.json").read_text())["steps"] == 8
    p = loragui("train", *common, "--out", tmp_path / "b", "--no-early-stop")
    assert "ended early" not in p.stdout
    assert json.loads((tmp_path / "b" / "run.json").read_text())["steps"] == 24


def test_bad_input_exit_2_without_traceback(tmp_path):
    images, masks = make_tiny_dataset(tmp_path / "data", n=4, size=32)
    base = make_tiny_base(tmp_path / "base.safetensors")
    other = make_tiny_base(tmp_path / "other.safetensors", seed=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["train", "--images", tmp_path / "nope", "--masks", masks, "--out", tmp_path / "r",
          "--base", base], "no such folder"),
        (["train", "--images", empty, "--masks", masks, "--out", tmp_path / "r", "--base", base],
         "no images"),
        (["train", "--images", images, "--masks", masks, "--out", tmp_path / "r", "--base", base,
          "--device", "cuda:5" if not _has_cuda() else "cuda:99"], "cuda"),
        (["train", "--images", images, "--masks", masks, "--out", tmp_path / "r", "--base", base,
          "--device", "tpu"], "unknown device"),
        (["train", "--images", images, "--masks", masks, "--out", tmp_path / "r", "--base", base,
          "--lr", "0"], "--lr must be a number above 0 and at most 10, not 0.0 (the default is 0.005)"),
        (["train", "--images", images, "--masks", masks, "--out", tmp_path / "r", "--base", base,
          "--whole-lr-scale", "-1"], "--whole-lr-scale must be a number from 0 to 1000, not -1.0"),
        (["evaluate", "--images", images, "--masks", masks, "--base", tmp_path / "missing.safetensors"],
         "does not exist"),
        (["predict", "--images", images, "--out", tmp_path / "p", "--base", images / "x.png"],
         "does not exist"),
    ]
    for args, expected in cases:
        p = loragui(*args, check=False)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr, p.stderr
        assert expected.lower() in p.stderr.lower(), (expected, p.stderr)
    # an adapter for another base model is refused, naming both
    run = tmp_path / "run"
    loragui("train", "--images", images, "--masks", masks, "--out", run, "--base", base, "--epochs",
            1, "--steps-per-epoch", 2, "--batch-size", 2, "--crop-size", 32, "--device", "cpu")
    p = loragui("evaluate", "--images", images, "--masks", masks, "--base", other, "--adapter",
                run / "adapter", check=False)
    assert p.returncode == 2 and "base.safetensors" in p.stderr and "other.safetensors" in p.stderr
    assert "Traceback" not in p.stderr


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_help_and_version():
    assert "train" in loragui("--help").stdout
    assert loragui("--version").stdout.startswith("loragui ")


def test_every_setting_has_an_option_and_the_command_line_reads_back():
    """TrainConfig.command_line() parses back to the same settings: each field has a
    ``loragui train`` option, and only the options given reach the settings."""
    import dataclasses
    import shlex

    from loragui import cli
    from loragui.cli_train import given_settings
    from loragui.engine.config import TrainConfig

    config = TrainConfig(
        images="i", masks="m", out="o", base="b.safetensors", init_adapter="a", corrections="c",
        full=True, rank=8, alpha=2.5,
        rslora=True, dropout=0.1, targets=["down.*", "up.*"], train_bias=False,
        train_modules=[], epochs=3, early_stop=False, steps=7, steps_per_epoch=2, batch_size=3, lr=1.2345678e-3,
        weight_decay=0.0, whole_lr_scale=0.2, warmup_fraction=0.1, crop_size=64,
        intensity_augment=False, val_fraction=0.3, seed=5, device="cpu", devices="cpu,cpu",
        invert_masks=True, auto_invert=False, compile=False, compile_from=5000, resume=True, overwrite=True,
        previews=2, width=16, depth=2, masks_hold="classes", classes=["background", "nucleus"])
    default = TrainConfig()
    assert all(getattr(config, f.name) != getattr(default, f.name)
               for f in dataclasses.fields(TrainConfig))
    words = shlex.split(config.command_line())
    assert words[:2] == ["loragui", "train"]
    args = cli.build_parser().parse_args(words[1:])
    assert TrainConfig.from_dict(given_settings(args)) == config
    args = cli.build_parser().parse_args(["train", "--out", "o", "--rank", "4"])
    assert given_settings(args) == {"out": "o", "rank": 4}
    assert TrainConfig(images="i", masks="m").command_line() == \
        "loragui train --images i --masks m --out OUT"


def test_train_init_adapter_refuses_a_mismatched_adapter_in_one_line(tmp_path):
    images, masks = make_tiny_dataset(tmp_path / "data", n=4, size=32)
    base = make_tiny_base(tmp_path / "base.safetensors")
    run = tmp_path / "run"
    common = ["--images", images, "--masks", masks, "--base", base, "--epochs", 1,
              "--steps-per-epoch", 2, "--batch-size", 2, "--crop-size", 32, "--device", "cpu"]
    loragui("train", *common, "--out", run, "--rank", 4)
    p = loragui("train", *common, "--out", tmp_path / "r2", "--rank", 2, "--init-adapter", run,
                check=False)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert "its rank is 4, this run's is 2: train with --rank 4 or without --init-adapter" in lines[0]
    assert not (tmp_path / "r2" / "adapter").exists()
    p = loragui("train", *common, "--out", run, "--resume", "--init-adapter", run / "adapter",
                check=False)
    assert p.returncode == 2 and "cannot be combined with --resume" in p.stderr, p.stderr
    # a fitting adapter starts the run
    p = loragui("train", *common, "--out", tmp_path / "r3", "--init-adapter", run / "adapter")
    assert "the initial adapter (--init-adapter): val Dice" in p.stdout, p.stdout


def test_train_with_corrections_and_no_masks_folder(tmp_path):
    images, masks = make_tiny_dataset(tmp_path / "data", n=6, size=32)
    base = make_tiny_base(tmp_path / "base.safetensors")
    common = ["--images", images, "--base", base, "--epochs", 1, "--steps-per-epoch", 2,
              "--batch-size", 2, "--crop-size", 32, "--device", "cpu"]
    p = loragui("train", *common, "--out", tmp_path / "r", check=False)
    assert p.returncode == 2 and "--corrections" in p.stderr and "Traceback" not in p.stderr
    p = loragui("train", *common, "--corrections", masks, "--out", tmp_path / "r")
    assert "6 images labelled (6 corrected), 0 unlabelled" in p.stdout, p.stdout
