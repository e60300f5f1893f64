"""The shipped base models and sample data are what the scripts that made them recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loragui.engine.basemodel import load_model
from loragui.engine.predict import evaluate_folders
from loragui.engine.resources import bundled_base_path, bundled_sample_dirs, resources_dir

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


def test_bundled_base_follows_the_device_and_the_adapter():
    """No --base: the small model to train on the CPU, the medium one on a GPU; to use
    an adapter, the bundled model it was trained on (by SHA-256)."""
    from loragui.engine.adapters import Adapter
    from loragui.engine.basemodel import resolve_base
    from loragui.engine.formats import sha256_file

    small = resolve_base(None, device_type="cpu")
    medium = resolve_base(None, device_type="cuda")
    assert small.name == "loragui-base-small.safetensors"
    assert medium.name == "loragui-base-medium.safetensors"
    assert resolve_base(None, device_type="mps") == medium and resolve_base(None) == small
    for base in (small, medium):
        adapter = Adapter({"loragui": {"base_sha256": sha256_file(base)}}, {}, Path("a"))
        assert resolve_base(None, device_type="cpu", adapter=adapter) == base
    stranger = Adapter({"loragui": {"base_sha256": "0" * 64}}, {}, Path("a"))
    assert resolve_base(None, device_type="cpu", adapter=stranger) == small
    assert resolve_base("given.safetensors", adapter=stranger) == Path("given.safetensors")
