"""The shipped base models and sample data are what the scripts that made them recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loragui.engine.files import bundled_base_path, bundled_sample_dirs, load_model, resources_dir
from loragui.engine.predict import evaluate_folders

CHECK = Path(__file__).parent / "data" / "base_check"


@pytest.mark.parametrize("name", ["small", "medium"])
def test_shipped_base_matches_its_record(name):
    base = resources_dir() / "base" / f"loragui-base-{name}.safetensors"
    record = json.loads(base.with_suffix(".json").read_text())
    assert sorted(p.name for p in (CHECK / "images").iterdir()) == record["check_images"]
    result = evaluate_folders(CHECK / "images", CHECK / "masks", base=base, device="cpu")
    assert result["dice"] == pytest.approx(record["check_dice_cpu"], abs=2e-3)
    assert result["dice_pooled"] == pytest.approx(record["check_dice_pooled_cpu"], abs=2e-3)
    _, info = load_model(base)
    assert (info.architecture.width, info.architecture.depth) == (
        record["architecture"]["width"], record["architecture"]["depth"])


def test_bundled_defaults_exist():
    assert bundled_base_path() is not None and bundled_base_path().name.endswith("small.safetensors")
    dirs = bundled_sample_dirs()
    assert dirs is not None
    images, masks = dirs
    assert len(list(images.iterdir())) >= 24 and len(list(masks.iterdir())) >= 24
    assert (images.parent / "LICENSE.txt").is_file()
