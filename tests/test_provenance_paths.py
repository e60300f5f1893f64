"""Provenance holds folder and file names only: nothing a model or adapter records names
the machine it was made on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loragui.engine.info import read_model_info
from loragui.engine.resources import resources_dir
from loragui.engine.train import run_training
from tests.tiny import tiny_config

ROOT = Path(__file__).resolve().parents[1]
# a POSIX absolute path (/home/...) or a Windows one (C:\..., C:/...) anywhere in a text
ABSOLUTE = re.compile(r"(?:^|[\s\"'=:(\[,])(/[A-Za-z0-9_.-]+/|[A-Za-z]:[\\/])")


def absolute_paths(text: str) -> list[str]:
    return [m.group(0) for m in ABSOLUTE.finditer(text)]


def test_the_pattern_finds_absolute_paths():
    assert absolute_paths('"images": "/work/x/images"') and absolute_paths("C:\\data\\x")
    assert not absolute_paths('"images": "images", "format": "loragui.base", 0.5/1')


@pytest.mark.parametrize("name", ["small", "medium"])
def test_loragui_info_on_each_bundled_base_prints_no_absolute_path(name):
    folder = resources_dir() / "base"
    for extra in ([], ["--json"]):
        # the file named relatively, so that only what the file records could be absolute
        proc = subprocess.run([sys.executable, "-m", "loragui", "info",
                               f"loragui-base-{name}.safetensors", *extra], cwd=folder,
                              capture_output=True, text=True, timeout=120,
                              env={"PYTHONPATH": str(ROOT), "PATH": ""})
        assert proc.returncode == 0, proc.stderr
        assert "dataset" in proc.stdout
        assert absolute_paths(proc.stdout) == [], proc.stdout
    record = (folder / f"loragui-base-{name}.json").read_text()
    assert absolute_paths(record) == [], record


@pytest.mark.parametrize("full", [False, True])
def test_a_run_records_folder_and_file_names_only(tmp_path, full):
    config = tiny_config(tmp_path, full=full, epochs=1, steps_per_epoch=2)
    assert Path(config.base).is_absolute() and Path(config.images).is_absolute()
    events = list(run_training(config))
    output = Path(events[-1].output)
    info = read_model_info(output)
    text = json.dumps(info, default=str).replace(json.dumps(str(output))[1:-1], "OUTPUT")
    assert absolute_paths(text) == [], text
    assert info["dataset"]["images"] == "images" and info["dataset"]["masks"] == "masks"
    assert info["training"]["base"] == "base.safetensors"
