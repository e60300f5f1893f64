"""Reading single files: unreadable and odd images, normalisation, orientation, masks."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from loragui.engine import imageio
from loragui.engine.dataset import DecodedDataset
from loragui.engine.errors import DataError
from loragui.engine.imageio import read_image
from loragui.engine.masks import read_mask
from loragui.engine.pairing import pair_folders
from loragui.engine.preprocessing import Preprocessing, normalize_image
from loragui.engine.sampler import CropSampler
from tests.datakit import PREP, deny_reading, grey_picture, write_image
from tests.messy import (
    H,
    W,
    blob_mask,
    make_tiny_dataset,
    picture,
    write_declared_png,
)

# Single-file problems


def test_permission_denied_simulated(tmp_path, monkeypatch):
    images, masks = make_tiny_dataset(tmp_path, n=3)
    deny_reading(monkeypatch, "images", "tiny_01.png")
    report = pair_folders(images, masks)
    assert [p.stem for p in report.pairs] == ["tiny_00", "tiny_02"]
    assert report.unreadable == [("images/tiny_01.png",
                                  "permission denied (check the file's access rights)")]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads files whatever their mode")
def test_permission_denied_real(tmp_path):
    images, masks = make_tiny_dataset(tmp_path, n=2)
    os.chmod(images / "tiny_00.png", 0)
    report = pair_folders(images, masks)
    assert ("images/tiny_00.png", "permission denied (check the file's access rights)") \
        in report.unreadable


def test_read_image_errors_name_the_file(tmp_path, monkeypatch):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(DataError, match="zero.png: the file is empty"):
        read_image(tmp_path / "zero.png", PREP)
    write_declared_png(tmp_path / "bomb.png", 100_000, 100_000)
    from PIL import Image

    decoded = []
    real_load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load",
                        lambda im: decoded.append(im.size) or real_load(im))
    with pytest.raises(DataError, match="bomb.png: declares 100000×100000 pixels, more than the "
                                        "400 megapixel limit"):
        read_image(tmp_path / "bomb.png", PREP)
    with pytest.raises(DataError, match="bomb.png"):
        read_mask(tmp_path / "bomb.png")
    assert not decoded  # refused from the header, nothing decoded
    monkeypatch.undo()
    write_image(tmp_path / "ok.png", grey_picture())
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.png: the file is truncated"):
        read_image(tmp_path / "cut.png", PREP)
    with pytest.raises(DataError, match="gone.png: the file no longer exists"):
        read_image(tmp_path / "gone.png", PREP)


def test_our_pixel_limit_governs_not_pillows(tmp_path):
    write_declared_png(tmp_path / "big.png", 12_000, 12_000)  # 144 MP: Pillow alone would warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with imageio.open_image(tmp_path / "big.png") as im:
            assert im.size == (12_000, 12_000)
    write_declared_png(tmp_path / "bomb.png", 30_000, 30_000)  # Pillow alone: a bare error
    with pytest.raises(DataError, match="bomb.png: declares 30000×30000 pixels"):
        read_image(tmp_path / "bomb.png", PREP)


def test_jpeg_with_trailing_bytes_is_not_called_truncated(tmp_path):
    rgb = np.stack([grey_picture(1), grey_picture(2), grey_picture(3)], axis=2)
    write_image(tmp_path / "a.jpg", rgb, quality=90)
    with open(tmp_path / "a.jpg", "ab") as f:
        f.write(b"\0" * 100 + b"trailer written by some camera")
    header = imageio.probe_image(tmp_path / "a.jpg")
    assert header.size == (W, H)


def test_tiny_8x8_images(tmp_path):
    images, masks = make_tiny_dataset(tmp_path, n=3, size=8)
    report = pair_folders(images, masks)
    data = DecodedDataset.build(report.pairs, PREP)
    assert all(im.shape == (8, 8, 3) for im in data.images)
    x, y = CropSampler(data, 32, seed=1).sample(4)
    assert x.shape == (4, 3, 32, 32) and y.shape == (4, 1, 32, 32)


# --------------------------------------------------------------------------
# Normalisation


def test_8bit_16bit_float_normalise_alike():
    pic = picture(64, 48, seed=3)
    ref = normalize_image((pic * 255).round().astype(np.uint8), PREP)
    for arr in ((pic * 65535).round().astype(np.uint16), (pic * 255).round() / 255.0,
                ((pic * 255).round() * 1000).astype(np.int32), pic.astype(np.float32)):
        out = normalize_image(arr, PREP)
        assert out.shape == (48, 64, 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - ref).max() <= 1, arr.dtype


def test_16bit_with_a_narrow_range_is_stretched_not_clipped():
    pic = picture(64, 48)
    narrow = (1000 + pic * 300).astype(np.uint16)  # uses 0.5 % of the 16-bit range
    out = normalize_image(narrow, PREP)
    assert out.min() <= 3 and out.max() >= 252
    flat = normalize_image(narrow, Preprocessing(method="none"))
    assert flat.max() <= 6  # "none" divides by 65535: nearly black, as documented


def test_normalize_percentiles_clip_outliers():
    arr = np.full((100, 100), 100, np.uint16)
    arr[:50] = 200
    arr[0, 0] = 60000  # one hot pixel must not darken everything
    out = normalize_image(arr, PREP)
    assert out[60, 0, 0] == 0 and out[10, 0, 0] == 255


def test_normalize_layouts_and_channels():
    grey = (picture(20, 10) * 255).astype(np.uint8)
    rgb = np.stack([grey, grey // 2, 255 - grey], axis=2)
    assert normalize_image(grey, PREP).shape == (10, 20, 3)
    assert np.array_equal(normalize_image(grey[..., None], PREP), normalize_image(grey, PREP))
    with_alpha = np.dstack([rgb, np.zeros_like(grey)])
    assert np.array_equal(normalize_image(with_alpha, PREP), normalize_image(rgb, PREP))
    grey_alpha = np.dstack([grey, np.zeros_like(grey)])
    assert np.array_equal(normalize_image(grey_alpha, PREP), normalize_image(grey, PREP))
    one = normalize_image(rgb, Preprocessing(channels=1))
    assert one.shape == (10, 20, 1)
    out = normalize_image(grey, PREP)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    for bad in (np.zeros((4, 4, 5)), np.zeros((4,)), np.zeros((0, 4)), np.zeros((4, 4), complex)):
        with pytest.raises(DataError):
            normalize_image(bad, PREP)


def test_normalize_none_method_and_special_values():
    none = Preprocessing(method="none")
    assert normalize_image(np.array([[0, 65535]], np.uint16), none)[0, :, 0].tolist() == [0, 255]
    assert normalize_image(np.array([[0.0, 0.5, 2.0]]), none)[0, :, 0].tolist() == [0, 128, 255]
    assert normalize_image(np.array([[False, True]]), none)[0, :, 0].tolist() == [0, 255]
    with_nan = picture(16, 16).astype(np.float32)
    with_nan[0, 0], with_nan[0, 1] = np.nan, np.inf
    out = normalize_image(with_nan, PREP)
    assert out.dtype == np.uint8 and out[0, 0, 0] == 0
    flat = normalize_image(np.full((4, 4), 7, np.uint8), PREP)
    assert flat.dtype == np.uint8  # a flat image does not divide by zero


def test_preprocessing_round_trip_and_validation():
    prep = Preprocessing(channels=1, method="none", low=2, high=98)
    d = prep.to_dict()
    assert d == {"channels": 1, "method": "none", "low": 2.0, "high": 98.0, "invert": False}
    assert Preprocessing.from_dict({**d, "future_key": 1}) == prep
    assert Preprocessing.from_dict({}) == Preprocessing()
    for bad in ({"channels": 2}, {"channels": "3"}, {"channels": True}, {"method": "zscore"},
                {"low": 50, "high": 40}, {"high": 101}, {"low": "1"}, {"invert": "yes"}):
        with pytest.raises(DataError, match="Invalid preprocessing"):
            Preprocessing.from_dict(bad)
    with pytest.raises(DataError):
        Preprocessing.from_dict(["not", "a", "dict"])


@pytest.mark.parametrize("value", range(1, 9))
def test_exif_orientation_matches_imageops(tmp_path, value):
    rgb = np.random.default_rng(value).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = value
    path = tmp_path / "o.png"
    Image.fromarray(rgb).save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = read_image(path, Preprocessing(method="none"))
    assert np.array_equal(got, expected)
    assert imageio.probe_image(path).shown_size == (expected.shape[1], expected.shape[0])
    unrotated = read_image(path, Preprocessing(method="none"), exif=False)
    assert np.array_equal(unrotated, rgb)


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((6, 6), v, np.uint8)).convert("P") for v in (50, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    out = read_image(tmp_path / "a.gif", Preprocessing(method="none"))
    assert abs(int(out[0, 0, 0]) - 50) <= 2
    assert imageio.probe_image(tmp_path / "a.gif").animated


# --------------------------------------------------------------------------
# Masks


def _mask_file(tmp_path: Path, name: str, arr, mode: str | None = None, **kw) -> Path:
    im = Image.fromarray(arr) if isinstance(arr, np.ndarray) else arr
    if mode:
        im = im.convert(mode)
    im.save(tmp_path / name, **kw)
    return tmp_path / name


def test_read_mask_kinds(tmp_path):
    blob = blob_mask()
    u8 = blob.astype(np.uint8)
    labels = np.zeros((H, W), np.uint8)
    labels[2:6, 2:6], labels[8:12, 2:6], labels[2:6, 10:20] = 1, 2, 3
    pal = Image.fromarray(u8, "P")
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    alpha_only = np.dstack([np.full((H, W, 3), 255, np.uint8), u8 * 255])  # white, painted alpha
    coloured = np.dstack([u8 * 200, np.zeros((H, W), np.uint8), u8 * 30,
                          np.full((H, W), 255, np.uint8)])
    cases = {
        "01.png": (u8, None, blob, 2),
        "0255.png": (u8 * 255, None, blob, 2),
        "labels.png": (labels, None, labels > 0, 4),
        "labels16.png": (labels.astype(np.uint16) * 4000, None, labels > 0, 4),
        "palette.png": (pal, None, blob, 2),
        "rgb.png": (np.dstack([u8 * 255] * 3), None, blob, 2),
        "rgba.png": (coloured, None, blob, 2),
        "alpha.png": (alpha_only, None, blob, 2),
        "la.png": (np.dstack([u8 * 255, np.full((H, W), 255, np.uint8)]), "LA", blob, 2),
        "bits.png": (blob, None, blob, 2),
        "bits.tif": (blob, None, blob, 2),
        "empty.png": (np.zeros((H, W), np.uint8), None, np.zeros((H, W), bool), 1),
        "full.png": (np.full((H, W), 255, np.uint8), None, np.ones((H, W), bool), 1),
    }
    for name, (arr, mode, want, n) in cases.items():
        mask, values = read_mask(_mask_file(tmp_path, name, arr, mode))
        assert mask.dtype == np.bool_ and mask.shape == (H, W), name
        assert np.array_equal(mask, want), name
        assert values == n, name


def test_read_mask_jpeg_is_thresholded(tmp_path):
    path = _mask_file(tmp_path, "m.jpg", blob_mask().astype(np.uint8) * 255, quality=60)
    assert read_mask(path)[0].tolist() == blob_mask().tolist()
    ones = _mask_file(tmp_path, "ones.jpg", blob_mask().astype(np.uint8), quality=95)
    assert read_mask(ones)[0].sum() > 0  # a 0/1 JPEG is thresholded at a quarter of its maximum


# --------------------------------------------------------------------------
