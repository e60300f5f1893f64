"""--corrections: a corrected mask replaces its image's original; images without either
stay unlabelled, and the report counts labelled, corrected and unlabelled images."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from loragui.engine.dataset import DecodedDataset
from loragui.engine.errors import DataError
from loragui.engine.pairing import pair_folders
from loragui.engine.train import run_training
from tests.messy import make_tiny_dataset
from tests.tiny import tiny_config


def _corrected(folder, stems, size=32):
    """0/255 masks of a square (unlike any tiny blob mask) named like the images."""
    folder.mkdir(exist_ok=True)
    mask = np.zeros((size, size), np.uint8)
    mask[4:20, 6:26] = 255
    for stem in stems:
        Image.fromarray(mask).save(folder / f"{stem}.png")
    return mask > 0


@pytest.fixture
def folders(tmp_path):
    images, masks = make_tiny_dataset(tmp_path / "data", n=6, size=32)
    for stem in ("tiny_04", "tiny_05"):  # two images without an original mask
        (masks / f"{stem}.png").unlink()
    corrections = tmp_path / "data" / "corrections"
    _corrected(corrections, ["tiny_01", "tiny_04"])  # one replaces an original, one is new
    return images, masks, corrections


def test_a_corrected_mask_replaces_its_original(folders):
    images, masks, corrections = folders
    report = pair_folders(images, masks, corrections=corrections)
    by_stem = {p.stem: p for p in report.pairs}
    assert sorted(by_stem) == ["tiny_00", "tiny_01", "tiny_02", "tiny_03", "tiny_04"]
    assert {s for s, p in by_stem.items() if p.corrected} == {"tiny_01", "tiny_04"}
    assert by_stem["tiny_01"].mask == corrections / "tiny_01.png"
    assert by_stem["tiny_00"].mask == masks / "tiny_00.png"
    assert report.images_without_masks == ["tiny_05.png"]
    assert report.counts() == {"labelled": 5, "corrected": 2, "unlabelled": 1}
    first = report.summary().splitlines()[0]
    assert "5 images labelled (2 corrected), 1 unlabelled" in first, first
    assert str(corrections) in first
    data = report.to_dict()
    assert (data["labelled"], data["corrected"], data["unlabelled"]) == (5, 2, 1)
    assert data["corrections_dir"] == str(corrections)
    assert [p["corrected"] for p in data["pairs"]] == [False, True, False, False, True]


def test_the_corrections_alone_are_the_masks(folders):
    images, _, corrections = folders
    report = pair_folders(images, None, corrections=corrections)
    assert [(p.stem, p.corrected) for p in report.pairs] == [("tiny_01", True), ("tiny_04", True)]
    assert report.counts() == {"labelled": 2, "corrected": 2, "unlabelled": 4}
    empty = corrections.parent / "none_yet"
    empty.mkdir()
    report = pair_folders(images, None, corrections=empty)  # nothing corrected yet: no pairs
    assert not report.ok and report.counts()["unlabelled"] == 6


def test_a_corrections_folder_that_is_the_masks_folder_simply_holds_the_masks(folders):
    images, masks, _ = folders
    plain = pair_folders(images, masks)
    same = pair_folders(images, masks, corrections=masks)
    assert [p.to_dict() for p in same.pairs] == [p.to_dict() for p in plain.pairs]
    assert not any(p.corrected for p in same.pairs)


def test_without_masks_or_corrections_the_message_says_what_to_give(folders):
    images, _, _ = folders
    with pytest.raises(DataError, match="No masks folder was given.*corrected masks"):
        pair_folders(images, None)


def test_a_training_with_corrections_uses_the_corrected_masks(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, epochs=1)
    corrections = tmp_path / "corrections"
    square = _corrected(corrections, ["tiny_02", "tiny_06"])
    received = {}
    build = DecodedDataset.build.__func__

    def spy(cls, pairs, *args, **kwargs):
        received["pairs"] = list(pairs)
        received["data"] = build(cls, pairs, *args, **kwargs)
        return received["data"]

    monkeypatch.setattr(DecodedDataset, "build", classmethod(spy))
    config.corrections = str(corrections)
    events = list(run_training(config))
    assert type(events[-1]).__name__ == "RunFinished", events[-1]
    pairs = {p.stem: p for p in received["pairs"]}
    assert {s for s, p in pairs.items() if p.corrected} == {"tiny_02", "tiny_06"}
    assert pairs["tiny_02"].mask == corrections / "tiny_02.png"
    data = received["data"]
    decoded = dict(zip(data.names, data.masks, strict=True))
    assert np.array_equal(decoded["tiny_02"] > 0, square)
    assert not np.array_equal(decoded["tiny_03"] > 0, square)  # an original stays as it was
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["dataset"]["corrected"] == ["tiny_02", "tiny_06"]
    assert record["dataset"]["corrections"] == "corrections"  # a name, never a path
    assert record["config"]["corrections"] == str(corrections)
    log = " ".join(e.message for e in events if type(e).__name__ == "LogEvent")
    assert "8 images labelled (2 corrected), 0 unlabelled" in log


def test_a_training_from_images_and_corrections_alone(tmp_path):
    config = tiny_config(tmp_path, epochs=1, val_fraction=0.5)
    corrections = tmp_path / "corrections"
    shutil.copytree(config.masks, corrections)
    (corrections / "tiny_07.png").unlink()
    config.masks, config.corrections = "", str(corrections)
    events = list(run_training(config))
    assert type(events[-1]).__name__ == "RunFinished", events[-1]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["dataset"]["pairs"] == 7 and record["dataset"]["unlabelled"] == 1
    assert record["dataset"]["masks"] is None
    # `loragui evaluate --run` scores the validation images against the masks the run used
    from loragui.engine.predict import evaluate_folders
    from loragui.engine.runrecord import validation_inputs

    inputs = validation_inputs(tmp_path / "run")
    assert inputs["masks"] is None and inputs["corrections"] == str(corrections)
    result = evaluate_folders(inputs["images"], inputs["masks"], adapter=inputs["adapter"],
                              base=config.base, device="cpu", stems=inputs["stems"],
                              corrections=inputs["corrections"])
    assert [r["stem"] for r in result["per_image"]] == record["validation"]
