"""JPEG masks keep their foreground and get a report line saying how they were read;
masks that are almost all foreground get a warning that they may be inverted."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loragui.engine.masks import read_mask
from loragui.engine.pairing import pair_folders
from tests.test_data import REAL_DATA
from tests.test_settings_cli import loragui
from tests.tiny import make_tiny_base

REAL = REAL_DATA / "fluorescence"


def _jpeg(array: np.ndarray, path: Path, quality: int = 75) -> Path:
    Image.fromarray(array).save(path, "JPEG", quality=quality)
    return path


def _disc_mask(size: int = 48, radius: int = 14) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < radius**2).astype(np.uint8) * 255


@pytest.mark.skipif(not REAL.is_dir(), reason="the shared real data set is not beside the clone")
def test_a_jpeg_copy_of_a_real_mask_keeps_its_foreground(tmp_path):
    for path in sorted((REAL / "masks").iterdir())[:3]:
        truth = np.array(Image.open(path).convert("L")) > 0
        for quality in (75, 95):
            jpeg = _jpeg((truth * 255).astype(np.uint8), tmp_path / f"{path.stem}.jpg", quality)
            mask, _ = read_mask(jpeg)
            assert (mask != truth).mean() < 0.001, (path.name, quality)


def test_a_jpeg_label_image_keeps_more_than_the_half_of_its_maximum_did(tmp_path):
    labels = np.zeros((64, 64), np.uint8)
    for i, value in enumerate((1, 2, 3, 4, 5, 6, 7, 8)):  # labels 1..8, in a row of squares
        labels[20:36, 2 + 8 * i: 8 + 8 * i] = value * 30
    mask, _ = read_mask(_jpeg(labels, tmp_path / "labels.jpg", 95))
    truth = labels > 0
    kept = (mask & truth).sum() / truth.sum()
    assert kept > 0.7  # above a quarter of 240: labels 90 and up (6 of 8); half kept 4 of 8


def _folders(tmp_path: Path, masks: dict[str, np.ndarray], jpeg: set[str]) -> tuple[Path, Path]:
    images, mask_dir = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    mask_dir.mkdir()
    rng = np.random.default_rng(0)
    for name, mask in masks.items():
        Image.fromarray(rng.integers(0, 255, (*mask.shape, 3), np.uint8)).save(images / f"{name}.png")
        if name in jpeg:
            _jpeg(mask, mask_dir / f"{name}.jpg")
        else:
            Image.fromarray(mask).save(mask_dir / f"{name}.png")
    return images, mask_dir


def test_jpeg_and_nearly_full_masks_each_get_a_report_line_saying_what_to_do(tmp_path):
    inverted = 255 - _disc_mask(radius=5)  # 97 % foreground: the objects are black
    images, masks = _folders(tmp_path, {"a": _disc_mask(), "b": _disc_mask(), "c": inverted},
                             jpeg={"a"})
    report = pair_folders(images, masks)
    assert report.lossy_masks == ["a.jpg"] and report.mostly_foreground == ["c.png"]
    lines = report.summary().splitlines()
    jpeg = next(line for line in lines if line.startswith("Masks stored as JPEG (1)"))
    assert "a quarter of their brightest value" in jpeg and "PNG" in jpeg
    nearly = next(line for line in lines if line.startswith("Masks that are almost all"))
    assert "c.png" in nearly and "inverted" in nearly


def test_the_command_line_prints_the_mask_lines_before_training(tmp_path):
    inverted = 255 - _disc_mask(radius=5)
    images, masks = _folders(tmp_path, {"a": _disc_mask(), "b": _disc_mask(), "c": inverted,
                                        "d": _disc_mask(radius=8)}, jpeg={"a"})
    base = make_tiny_base(tmp_path / "base.safetensors")
    p = loragui("train", "--images", images, "--masks", masks, "--base", base, "--device", "cpu",
                "--out", tmp_path / "run", "--steps", 1, "--crop-size", 32, "--batch-size", 2)
    assert p.returncode == 0, p.stderr
    assert "warning: Masks stored as JPEG (1): a.jpg." in p.stdout
    assert "warning: Masks that are almost all foreground (over 95 %) (1): c.png." in p.stdout


def test_jpeg_bytes_are_what_the_test_writes():
    buf = io.BytesIO()
    Image.fromarray(_disc_mask()).save(buf, "JPEG", quality=75)
    assert Image.open(io.BytesIO(buf.getvalue())).format == "JPEG"


def test_invert_masks_trains_on_the_masks_the_other_way_round(tmp_path):
    from loragui.engine.dataset import DecodedDataset
    from loragui.engine.preprocessing import Preprocessing

    images, masks = _folders(tmp_path, {"a": 255 - _disc_mask(), "b": 255 - _disc_mask()},
                             jpeg=set())
    pairs = pair_folders(images, masks).pairs
    plain = DecodedDataset.build(pairs, Preprocessing())
    inverted = DecodedDataset.build(pairs, Preprocessing(), invert=True)
    for m, inv in zip(plain.masks, inverted.masks, strict=True):
        assert np.array_equal(m.astype(bool), ~inv.astype(bool))
    base = make_tiny_base(tmp_path / "base.safetensors")
    p = loragui("train", "--images", images, "--masks", masks, "--base", base, "--device", "cpu",
                "--out", tmp_path / "run", "--steps", 1, "--crop-size", 32, "--batch-size", 2,
                "--invert-masks")
    assert p.returncode == 0, p.stderr
    assert "the masks are used inverted (--invert-masks)" in p.stdout
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["config"]["invert_masks"] is True
