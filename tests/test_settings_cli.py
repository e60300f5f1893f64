"""Every setting is checked once, before any work, against its declaration: through the
real command line a bad value is exit 2 and one line naming the option, never a
traceback and never a run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.messy import make_tiny_dataset
from tests.tiny import make_tiny_base


def loragui(*args, timeout=120):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "loragui", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


def refused(p, *words):
    """Exit 2, one line on standard error naming ``words``, nothing on standard output."""
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert len(lines) == 1 and lines[0].startswith("loragui: error: "), p.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("settings")
    images, masks = make_tiny_dataset(root / "data", n=6, size=32)
    base = make_tiny_base(root / "base.safetensors")
    return root, ["train", "--images", images, "--masks", masks, "--base", base, "--device", "cpu",
                  "--out", root / "run"]


BAD_FLAGS = [
    (["--alpha", "0"], "--alpha", "above 0"),
    (["--alpha", "-1"], "--alpha", "above 0"),
    (["--alpha", "nan"], "--alpha", "nan"),
    (["--dropout", "-1"], "--dropout", "below 1"),
    (["--dropout", "1.5"], "--dropout", "below 1"),
    (["--rank", "5000"], "--rank", "4096"),
    (["--rank", "100000"], "--rank", "4096"),
    (["--rank", "0"], "--rank", "from 1"),
    (["--steps", "-1"], "--steps", "from 1"),
    (["--epochs", "0"], "--epochs", "from 1"),
    (["--batch-size", "0"], "--batch-size", "from 1"),
    (["--seed", str(2**64)], "--seed", "from 0"),
    (["--seed", "-1"], "--seed", "from 0"),
    (["--full", "--width", "0"], "--width", "from 1"),
    (["--full", "--depth", "0"], "--depth", "from 1"),
    (["--full", "--depth", "20"], "--depth", "from 1 to 8"),
    (["--weight-decay", "nan"], "--weight-decay", "nan"),
    (["--weight-decay", "-0.1"], "--weight-decay", "from 0"),
    (["--lr", "inf"], "--lr", "inf"),
    (["--warmup-fraction", "2"], "--warmup-fraction", "from 0 to 1"),
    (["--val-fraction", "1"], "--val-fraction", "below 1"),
    (["--crop-size", "-5"], "--crop-size", "from 0"),
    (["--seed", "1e3"], "--seed", "invalid int value"),
]


@pytest.mark.parametrize("flags,option,words", BAD_FLAGS, ids=[" ".join(c[0]) for c in BAD_FLAGS])
def test_a_value_outside_its_declaration_is_one_line_naming_its_option(data, flags, option, words):
    root, train = data
    refused(loragui(*train, *flags), option, words)
    assert not (root / "run").exists()  # refused before any work


def test_layer_names_that_match_nothing_are_refused_with_the_valid_names(data):
    root, train = data
    line = refused(loragui(*train, "--train-modules", "nosuch"), "--train-modules 'nosuch'")
    assert "head" in line and "bottleneck" in line
    line = refused(loragui(*train, "--targets", "down.*,nosuch"), "--targets 'nosuch'")
    assert "down.0.conv1" in line and "head" in line


def test_a_training_that_cannot_fit_in_memory_is_refused_before_it_grows(data):
    root, train = data
    base = train[train.index("--base") + 1]
    scratch = [w for w in train if w not in ("--base", base)]  # --full from scratch
    line = refused(loragui(*scratch, "--full", "--depth", "8", "--width", "1024", "--steps", 1),
                   "memory")
    assert "--width or --depth" in line
    line = refused(loragui(*train, "--rank", "4096", "--crop-size", "8192", "--batch-size",
                           "4096", "--steps", 1), "memory", "crops of 8192 px")
    assert "--crop-size" in line and str(base) not in line


def test_a_crop_size_the_model_cannot_take_is_rounded_up_and_said_so(data):
    root, train = data
    p = loragui(*train, "--crop-size", "30", "--steps", "2", "--batch-size", "2")
    assert p.returncode == 0, p.stderr
    assert "crop size 30 rounded up to 32" in p.stdout
    assert (root / "run" / "adapter" / "adapter_config.json").is_file()


def config_file(tmp_path, text: str | bytes):
    path = tmp_path / "settings.json"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


CONFIGS = [
    ('{"rank": 1e300}', "rank must be a whole number"),
    ('{"rank": 5000}', "rank must be a whole number from 1 to 4096"),
    ('{"alpha": 1e999}', "alpha must be a number above 0"),
    ('{"lr": NaN}', "NaN"),
    ('{"seed": ' + "9" * 5000 + "}", "not valid JSON"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ('{"rank": 4, "rank": 8}', "twice"),
    ('{"dropout": "0.1"}', "dropout must be a number"),
    ('{"targets": "head"}', "targets must be a list of names"),
    ('{"full": 1}', "full must be true or false"),
    ('{"nosuch": 1}', "unknown setting"),
    ('"rank"', "a JSON object"),
    (b"\xff\xfe{}", "UTF-8"),
]


@pytest.mark.parametrize("text,words", CONFIGS, ids=[w for _, w in CONFIGS])
def test_a_config_file_is_parsed_against_the_same_declaration(data, tmp_path, text, words):
    root, train = data
    refused(loragui(*train, "--config", config_file(tmp_path, text)), "--config", words)


def test_config_files_that_are_not_ordinary_small_files_are_refused_without_hanging(data, tmp_path):
    root, train = data
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"images": "x" * 2**21}))
    refused(loragui(*train, "--config", big), "--config", "implausibly large")
    refused(loragui(*train, "--config", tmp_path), "--config", "folder")
    if os.path.exists("/dev/zero"):
        refused(loragui(*train, "--config", "/dev/zero"), "--config", "not a regular file")
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.json"
        os.mkfifo(fifo)
        refused(loragui(*train, "--config", fifo, timeout=60), "--config", "not a regular file")
