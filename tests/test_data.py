"""Tests of the data path: listing and pairing messy folders, reading, decoding, sampling."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from loragui.engine import imageio
from loragui.engine.dataset import DecodedDataset, split_indices
from loragui.engine.errors import DataError, LoraGuiError
from loragui.engine.folders import IMAGE_SUFFIXES, find_image_mask_dirs, list_images
from loragui.engine.imageio import read_image
from loragui.engine.masks import read_mask
from loragui.engine.model_input import to_model_input
from loragui.engine.pairing import Pair, PairingReport, pair_folders
from loragui.engine.preprocessing import Preprocessing, normalize_image
from loragui.engine.sampler import CropSampler
from tests.messy import (
    H,
    W,
    blob_mask,
    make_messy_dataset,
    make_tiny_dataset,
    picture,
    write_big_png,
    write_declared_png,
)

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"
PREP = Preprocessing()


# --------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    expected = make_messy_dataset(root)
    report = pair_folders(expected.images_dir, expected.masks_dir)
    return expected, report


def _pairs(root: Path, n: int = 4, size: int = 16, seed: int = 0) -> list[Pair]:
    images, masks = make_tiny_dataset(root, n=n, size=size, seed=seed)
    report = pair_folders(images, masks)
    assert report.ok and len(report.pairs) == n
    return report.pairs


def _write(path: Path, arr: np.ndarray, **kw) -> Path:
    Image.fromarray(arr).save(path, **kw)
    return path


def _grey(seed: int = 0) -> np.ndarray:
    return (picture(W, H, seed) * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------
# The messy folder: every case and its outcome


def test_messy_pairs_found(messy):
    expected, report = messy
    assert {p.stem for p in report.pairs} == expected.pairs
    assert report.ok
    assert report.images_dir == expected.images_dir and report.masks_dir == expected.masks_dir


@pytest.mark.parametrize("attr", ["images_without_masks", "masks_without_images", "size_mismatch",
                                  "not_binary", "empty_masks", "full_masks", "ignored_files",
                                  "lossy_masks", "mostly_foreground"])
def test_messy_problem_lists(messy, attr):
    expected, report = messy
    assert set(getattr(report, attr)) == set(getattr(expected, attr))


def test_messy_unreadable_with_reasons(messy):
    expected, report = messy
    found = dict(report.unreadable)
    assert set(found) == set(expected.unreadable)
    for name, words in expected.unreadable.items():
        reason = found[name]
        if name.endswith("cuttiff.tif"):  # depends on where the cut lands in the TIFF
            assert "truncated" in reason or "damaged" in reason or "not an image" in reason
        else:
            assert words in reason, (name, reason)


def test_messy_bomb_refused_with_numbers(messy):
    _, report = messy
    reason = dict(report.unreadable)["images/bomb.png"]
    assert "100000×100000" in reason and "400 megapixel" in reason


def test_messy_duplicates_say_which_file_is_used(messy):
    expected, report = messy
    assert set(report.duplicate_stems) == set(expected.duplicate_stems)
    for stem, used in expected.duplicate_stems.items():
        pair = next(p for p in report.pairs if p.stem == stem)
        assert pair.image.name == used
        assert f"used {used}" in report.details["duplicate_stems"][stem]


def test_messy_notes_name_the_files(messy):
    expected, report = messy
    for name in expected.notes_mention:
        assert any(name in note for note in report.notes), name


def test_messy_exif_orientation_follows_the_mask(messy):
    expected, report = messy
    by_stem = {p.stem: p for p in report.pairs}
    for stem, pair in by_stem.items():
        assert pair.exif == (stem not in expected.unrotated), stem
    assert by_stem["exif_rotated"].shape == (W, H)  # shown upright: 24 high, 16 wide
    assert by_stem["exif_stored"].shape == (H, W)
    assert any("exif_stored.jpg" in n and "unrotated" in n for n in report.notes)
    assert any("exif_rotated.jpg" in n and "EXIF rotation applied" in n for n in report.notes)


def test_messy_mismatch_detail_gives_sizes(messy):
    _, report = messy
    assert report.details["size_mismatch"]["mismatch"] == "image 24×16, mask 20×16"


def test_messy_pairs_decode_and_masks_are_right(messy):
    expected, report = messy
    data = DecodedDataset.build(report.pairs, PREP)
    assert len(data) == len(expected.pairs)
    for name, image, mask in zip(data.names, data.images, data.masks, strict=True):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}, name
        assert image.shape[:2] == mask.shape, name
        if name in expected.foreground:
            assert int(mask.sum()) == expected.foreground[name], name
    jpeg = data.masks[data.names.index("jpegmask")]
    assert np.array_equal(jpeg.astype(bool), blob_mask())  # JPEG noise thresholded away


def test_messy_image_formats_read_alike(messy):
    """Grey 8-bit, 16-bit PNG/TIFF and float TIFF of one picture normalise the same."""
    expected, report = messy
    by_stem = {p.stem: p for p in report.pairs}
    reference = read_image(by_stem["grey8"].image, PREP)
    for stem in ("grey16", "grey16tif", "float32", "multipage", "la"):
        other = read_image(by_stem[stem].image, PREP)
        assert np.abs(other.astype(int) - reference).max() <= 1, stem


def test_messy_cmyk_and_palette_become_rgb(messy):
    _, report = messy
    by_stem = {p.stem: p for p in report.pairs}
    plain = read_image(by_stem["plain_01"].image, PREP).astype(int)
    for stem, tolerance in (("cmyk", 20), ("rgba", 1), ("bitmap", 1), ("palette", 60)):
        image = read_image(by_stem[stem].image, PREP)
        assert image.shape == plain.shape, stem
        assert np.abs(image.astype(int) - plain).mean() < tolerance / 2, stem


def test_messy_summary_and_groups(messy):
    expected, report = messy
    text = report.summary(max_names=3)
    lines = text.splitlines()
    assert lines[0].startswith(f"{len(expected.pairs)} pairs found in")
    assert "Images without masks (1): lonely.png." in text
    assert "Masks without images (1): orphan.png." in text
    unreadable = next(line for line in lines if line.startswith("Unreadable files"))
    assert f"({len(expected.unreadable)})" in unreadable
    assert f"… and {len(expected.unreadable) - 3} more" in unreadable
    assert "re-save" in unreadable  # says what to do
    groups = dict(report.problem_groups())
    assert "Images without masks (1)" in groups
    assert groups["Image and mask sizes differ (1)"] == ["mismatch (image 24×16, mask 20×16)"]
    assert all(entries for entries in groups.values())
    # JSON-ready, and round-trips the important parts.
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is True and len(d["pairs"]) == len(expected.pairs)
    assert ["images/zero.png", "the file is empty (0 bytes)"] in d["unreadable"]


def test_report_without_pairs_says_so(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    _write(images / "a.png", _grey())
    _write(masks / "b.png", blob_mask().astype(np.uint8) * 255)
    report = pair_folders(images, masks)
    assert not report.ok
    assert report.images_without_masks == ["a.png"] and report.masks_without_images == ["b.png"]
    text = report.summary()
    assert text.startswith("No pairs found in")
    assert "same name" in text


def test_clean_report_has_one_line(tmp_path):
    images, masks = make_tiny_dataset(tmp_path, n=3)
    report = pair_folders(images, masks)
    assert report.summary() == f"3 pairs found in {images.absolute()} and {masks.absolute()}."
    assert report.problem_groups() == []


def test_pairs_sorted_naturally(tmp_path):
    images, masks = tmp_path / "i", tmp_path / "m"
    images.mkdir()
    masks.mkdir()
    for stem in ("img10", "img2", "Img1"):
        _write(images / f"{stem}.png", _grey())
        _write(masks / f"{stem}.png", blob_mask())
    assert [p.stem for p in pair_folders(images, masks).pairs] == ["Img1", "img2", "img10"]


# --------------------------------------------------------------------------
# Folder-level errors


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        pair_folders(tmp_path / "nope", tmp_path)


def test_file_instead_of_folder(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "m").mkdir()
    with pytest.raises(DataError, match="not a folder"):
        pair_folders(tmp_path / "f.txt", tmp_path / "m")


def test_empty_images_folder_only_masks(tmp_path):
    (tmp_path / "images").mkdir()
    masks = tmp_path / "masks"
    masks.mkdir()
    _write(masks / "a.png", blob_mask())
    with pytest.raises(DataError, match=r"holds no images \(PNG, JPEG, TIFF, BMP, GIF\)"):
        pair_folders(tmp_path / "images", masks)


def test_both_folders_empty(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="images folder .* holds no images"):
        pair_folders(tmp_path / "images", tmp_path / "masks")


def test_pair_to_dict(tmp_path):
    pair = _pairs(tmp_path, n=2)[0]
    assert pair.to_dict() == {"stem": "tiny_00", "image": str(pair.image),
                              "mask": str(pair.mask), "shape": [16, 16], "exif": True,
                              "corrected": False}


def test_images_folder_with_only_clutter(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    (images / "README.txt").write_text("hi")
    (images / ".DS_Store").write_bytes(b"x")
    (images / "sub").mkdir()
    _write(images / "sub" / "a.png", _grey())
    _write(masks / "a.png", blob_mask())
    with pytest.raises(DataError, match="not its subfolders"):
        pair_folders(images, masks)


def test_empty_masks_folder(tmp_path):
    images, masks = make_tiny_dataset(tmp_path, n=2)
    for f in masks.iterdir():
        f.unlink()
    with pytest.raises(DataError, match="masks folder .* holds no images"):
        pair_folders(images, masks)


def test_parent_folder_given_as_images_gets_a_hint(tmp_path):
    images, masks = make_tiny_dataset(tmp_path, n=2)
    with pytest.raises(DataError, match="images/ and masks/ subfolders"):
        pair_folders(tmp_path, masks)


def test_same_folder_with_subfolders_uses_them(tmp_path):
    make_tiny_dataset(tmp_path, n=3)
    report = pair_folders(tmp_path, tmp_path)
    assert len(report.pairs) == 3
    assert report.images_dir.name == "images" and report.masks_dir.name == "masks"
    assert any("both folders" in n for n in report.notes)


def test_same_folder_split_by_mask_suffix(tmp_path):
    for i in range(3):
        _write(tmp_path / f"cell{i}.png", _grey(i))
        _write(tmp_path / f"cell{i}_mask.png", blob_mask())
    report = pair_folders(tmp_path, tmp_path)
    assert [p.stem for p in report.pairs] == ["cell0", "cell1", "cell2"]
    assert all(p.mask.name == f"{p.stem}_mask.png" for p in report.pairs)
    assert "images and masks together" in report.summary()


def test_same_folder_without_split_is_an_error(tmp_path):
    for i in range(2):
        _write(tmp_path / f"cell{i}.png", _grey(i))
    with pytest.raises(DataError, match="nothing tells them apart"):
        pair_folders(tmp_path, tmp_path)


def test_unreadable_folder(tmp_path, monkeypatch):
    images, masks = make_tiny_dataset(tmp_path, n=2)
    real = os.scandir

    def scandir(path="."):
        if Path(path) == images.absolute():
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match="cannot be read .permission denied"):
        pair_folders(images, masks)


def test_empty_folder_name(tmp_path):
    with pytest.raises(DataError, match="No images folder was given"):
        pair_folders("", tmp_path)


# --------------------------------------------------------------------------
# Single-file problems


def test_permission_denied_simulated(tmp_path, monkeypatch):
    images, masks = make_tiny_dataset(tmp_path, n=3)
    real_open = open

    def guarded(file, *args, **kwargs):
        if str(file).endswith("tiny_01.png") and "images" in str(file):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(imageio, "open", guarded, raising=False)
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
    _write(tmp_path / "ok.png", _grey())
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
    rgb = np.stack([_grey(1), _grey(2), _grey(3)], axis=2)
    _write(tmp_path / "a.jpg", rgb, quality=90)
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
    assert d == {"channels": 1, "method": "none", "low": 2.0, "high": 98.0}
    assert Preprocessing.from_dict({**d, "future_key": 1}) == prep
    assert Preprocessing.from_dict({}) == Preprocessing()
    for bad in ({"channels": 2}, {"channels": "3"}, {"channels": True}, {"method": "zscore"},
                {"low": 50, "high": 40}, {"high": 101}, {"low": "1"}):
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
# Helpers for dropped folders


def test_find_image_mask_dirs(tmp_path):
    assert find_image_mask_dirs(tmp_path) is None
    (tmp_path / "Images").mkdir()
    assert find_image_mask_dirs(tmp_path) is None
    (tmp_path / "labels").mkdir()
    assert find_image_mask_dirs(tmp_path) == (tmp_path / "Images", tmp_path / "labels")
    (tmp_path / "masks").mkdir()  # "masks" beats "labels"
    assert find_image_mask_dirs(tmp_path) == (tmp_path / "Images", tmp_path / "masks")
    assert find_image_mask_dirs(tmp_path / "missing") is None
    (tmp_path / "file.txt").write_text("x")
    assert find_image_mask_dirs(tmp_path / "file.txt") is None


def test_list_images(tmp_path):
    images, _ = make_tiny_dataset(tmp_path, n=3)
    (images / "notes.txt").write_text("x")
    assert [p.name for p in list_images(images)] == ["tiny_00.png", "tiny_01.png", "tiny_02.png"]
    with pytest.raises(DataError, match="holds no images"):
        list_images(tmp_path)


def test_image_suffixes():
    assert IMAGE_SUFFIXES == frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"})


def test_errors_are_loragui_errors():
    assert issubclass(imageio.UnreadableFileError, DataError)
    assert issubclass(DataError, LoraGuiError)


# --------------------------------------------------------------------------
# Progress and stop


def test_progress_reports_to_the_end(tmp_path):
    images, masks = make_tiny_dataset(tmp_path, n=40, size=8)
    calls = []
    pair_folders(images, masks, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 40) and calls[-1] == (40, 40)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_stop_event(tmp_path):
    images, masks = make_tiny_dataset(tmp_path, n=40, size=8)
    stop = threading.Event()
    stop.set()
    with pytest.raises(DataError, match="Scan stopped"):
        pair_folders(images, masks, stop=stop)
    pairs = pair_folders(images, masks).pairs
    with pytest.raises(DataError, match="stopped"):
        DecodedDataset.build(pairs, PREP, stop=stop)


def test_stop_during_scan(tmp_path):
    images, masks = make_tiny_dataset(tmp_path, n=60, size=8)
    stop = threading.Event()

    def progress(done, total):
        if done >= 10:
            stop.set()

    with pytest.raises(DataError, match="Scan stopped"):
        pair_folders(images, masks, progress=progress, stop=stop)


# --------------------------------------------------------------------------
# Decoded data


def test_build_decodes_each_file_once(tmp_path, monkeypatch):
    pairs = _pairs(tmp_path, n=5)
    opened: list[str] = []
    real = Image.open

    def counting(fp, *args, **kwargs):
        opened.append(getattr(fp, "name", str(fp)))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    data = DecodedDataset.build(pairs, PREP)
    assert len(opened) == 10 and len(set(opened)) == 10
    sampler = CropSampler(data, 8, seed=0)
    for _ in range(20):
        sampler.sample(4)
    assert len(opened) == 10  # training never goes back to the files


def test_build_shapes_subset_nbytes(tmp_path):
    pairs = _pairs(tmp_path, n=4, size=16)
    data = DecodedDataset.build(pairs, PREP)
    assert data.names == [p.stem for p in pairs]
    assert data.nbytes() == 4 * (16 * 16 * 3 + 16 * 16)
    sub = data.subset([2, 0])
    assert sub.names == [data.names[2], data.names[0]]
    assert sub.images[0] is data.images[2]  # shared, not copied
    assert len(sub) == 2


def test_fingerprint_is_stable_and_sensitive(tmp_path):
    pairs = _pairs(tmp_path, n=3)
    a = DecodedDataset.build(pairs, PREP)
    b = DecodedDataset.build(pairs, PREP)
    assert a.fingerprint() == b.fingerprint()
    assert len(a.fingerprint()) == 64
    b.images[1] = b.images[1].copy()
    b.images[1][0, 0, 0] ^= 1
    assert a.fingerprint() != b.fingerprint()
    assert a.subset([0, 1]).fingerprint() != a.fingerprint()
    c = DecodedDataset.build(pairs, Preprocessing(channels=1))
    assert c.fingerprint() != a.fingerprint()


def test_max_bytes(tmp_path):
    pairs = _pairs(tmp_path, n=4, size=16)
    need = 4 * 16 * 16 * 4
    DecodedDataset.build(pairs, PREP, max_bytes=need)
    with pytest.raises(DataError, match=r"GB of memory .* fewer or smaller images"):
        DecodedDataset.build(pairs, PREP, max_bytes=need - 1)
    unknown = [Pair(p.stem, p.image, p.mask) for p in pairs]  # no scanned sizes: checked as it goes
    with pytest.raises(DataError, match="fewer or smaller"):
        DecodedDataset.build(unknown, PREP, max_bytes=need - 1)


def test_folder_deleted_while_building(tmp_path):
    pairs = _pairs(tmp_path, n=30, size=8)
    images_dir = pairs[0].image.parent

    def progress(done, total):
        if images_dir.exists():
            shutil.rmtree(images_dir)

    with pytest.raises(DataError, match="disappeared while loading"):
        DecodedDataset.build(pairs, PREP, progress=progress)


def test_file_changed_after_scan(tmp_path):
    pairs = _pairs(tmp_path, n=3)
    pairs[1].image.write_bytes(b"not a png any more")
    with pytest.raises(DataError, match=f"Cannot load {pairs[1].image.name}: .*scan again"):
        DecodedDataset.build(pairs, PREP)
    _write(pairs[1].image, np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(DataError, match="changed since the folders were scanned"):
        DecodedDataset.build(pairs, PREP)


def test_build_needs_pairs():
    with pytest.raises(DataError):
        DecodedDataset.build([], PREP)


# --------------------------------------------------------------------------
# Split


def test_split_basic_cases():
    assert split_indices(0, 0.2, 0) == ([], [])
    assert split_indices(1, 0.2, 0) == ([0], [0])
    assert split_indices(1, 0.0, 0) == ([0], [])
    assert split_indices(5, 0.0, 0) == ([0, 1, 2, 3, 4], [])
    train, val = split_indices(2, 0.2, 0)
    assert len(train) == 1 and len(val) == 1
    train, val = split_indices(10, 0.3, 7)
    assert len(val) == 3 and sorted(train + val) == list(range(10))
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(DataError):
            split_indices(10, bad, 0)


def test_split_ignores_global_random_state():
    import random

    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    a = split_indices(50, 0.2, 3)
    random.seed(2)
    np.random.seed(2)
    torch.manual_seed(2)
    assert split_indices(50, 0.2, 3) == a
    assert split_indices(50, 0.2, 4) != a
    assert a == split_indices(50, 0.2, 3)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 300), fraction=st.floats(0, 0.95), seed=st.integers(0, 2**32))
def test_split_properties(n, fraction, seed):
    train, val = split_indices(n, fraction, seed)
    assert (train, val) == split_indices(n, fraction, seed)
    if n >= 2:
        assert not set(train) & set(val)
        assert sorted(train + val) == list(range(n))
        assert len(train) >= 1
        assert (len(val) >= 1) == (fraction > 0)


# --------------------------------------------------------------------------
# Crop sampler


def _aligned_dataset(n: int = 3, size: int = 40, seed: int = 0) -> DecodedDataset:
    """Images whose every channel is 255 exactly where the mask is 1 (and
    asymmetric, so a wrong flip shows)."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for i in range(n):
        h, w = size + 7 * i, size + 3 * i
        mask = (rng.random((h, w)) > 0.6).astype(np.uint8)
        images.append(np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8))
        masks.append(mask)
    return DecodedDataset([f"a{i}" for i in range(n)], images, masks)


def test_sampler_shapes_types_ranges():
    sampler = CropSampler(_aligned_dataset(), 16, "cpu", seed=0)
    x, y = sampler.sample(6)
    assert x.shape == (6, 3, 16, 16) and y.shape == (6, 1, 16, 16)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert x.device.type == "cpu" and y.device.type == "cpu"
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}


def test_sampler_keeps_masks_aligned_under_flips_and_rotations():
    sampler = CropSampler(_aligned_dataset(), 16, seed=5, intensity=False)
    for _ in range(10):
        x, y = sampler.sample(8)
        assert torch.equal((x[:, 0:1] > 0.5).float(), y)
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])


def test_sampler_augments_with_the_8_symmetries():
    data = _aligned_dataset(n=2, size=24)
    for image in data.images:  # make channels differ: a wrong op shows
        image[..., 1] = np.arange(image.shape[1], dtype=np.uint8)[None, :] * 3
        image[..., 2] = np.arange(image.shape[0], dtype=np.uint8)[:, None] * 5
    plain = CropSampler(data, 12, seed=9, augment=False)
    augmented = CropSampler(data, 12, seed=9, augment=True, intensity=False)
    seen = set()
    for _ in range(8):
        xp, yp = plain.sample(16)
        xa, ya = augmented.sample(16)
        for b in range(16):
            z, za = torch.cat([xp[b], yp[b]]), torch.cat([xa[b], ya[b]])
            ops = [k for k, t in enumerate(_symmetries(z)) if torch.equal(t, za)]
            assert ops, "augmented crop is not a flip/rotation of the plain crop"
            seen.add(ops[0])
    assert len(seen) == 8


def _symmetries(z: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for k in range(4):
        r = torch.rot90(z, k, dims=(-2, -1))
        out += [r, r.flip(-1)]
    return out


def test_sampler_intensity_augmentation():
    data = DecodedDataset(["g"], [np.full((32, 32, 3), 128, np.uint8)],
                          [np.zeros((32, 32), np.uint8)])
    x, _ = CropSampler(data, 16, seed=0).sample(32)
    means = x.mean(dim=(1, 2, 3))
    assert float(means.std()) > 0.02  # brightness/contrast/gamma differ per sample
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    x2, _ = CropSampler(data, 16, seed=0, intensity=False).sample(32)
    assert torch.allclose(x2, torch.full_like(x2, 128 / 255))


def test_sampler_reproducible_and_resumable():
    data = _aligned_dataset()
    a, b = CropSampler(data, 16, seed=3), CropSampler(data, 16, seed=3)
    for _ in range(3):
        (xa, ya), (xb, yb) = a.sample(4), b.sample(4)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(CropSampler(data, 16, seed=4).sample(4)[0], CropSampler(data, 16,
                                                                                   seed=3).sample(4)[0])
    state = a.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)  # a checkpoint holds it, loaded with weights_only=True
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=True)
    expected = a.sample(5)
    c = CropSampler(data, 16, seed=999)
    c.load_state_dict(restored)
    got = c.sample(5)
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    with pytest.raises(DataError):
        c.load_state_dict({"nothing": 1})


def test_sampler_pads_small_images_consistently():
    data = _aligned_dataset(n=2, size=10)  # 10x10 and 17x13, crop 24: mirrored or zero-padded
    data.images.append(np.full((3, 3, 3), 255, np.uint8))  # too small to mirror: zeros
    data.masks.append(np.ones((3, 3), np.uint8))
    data.names.append("tiny")
    sampler = CropSampler(data, 24, seed=0, intensity=False)
    for _ in range(5):
        x, y = sampler.sample(8)
        assert x.shape == (8, 3, 24, 24)
        assert torch.equal((x[:, 0:1] > 0.5).float(), y)  # padding keeps image and mask agreeing


def test_sampler_weights_images_by_area():
    big = np.zeros((64, 64, 3), np.uint8)
    small = np.full((16, 16, 3), 255, np.uint8)
    data = DecodedDataset(["big", "small"], [big, small],
                          [np.zeros((64, 64), np.uint8), np.ones((16, 16), np.uint8)])
    y = CropSampler(data, 16, seed=0, augment=False).sample(4000)[1]
    share_small = float(y.mean())
    assert abs(share_small - 1 / 17) < 0.02


def test_sampler_rejects_bad_arguments():
    with pytest.raises(DataError):
        CropSampler(DecodedDataset([], [], []), 16)
    with pytest.raises(DataError):
        CropSampler(_aligned_dataset(), 0)


def test_to_model_input():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = to_model_input(image)
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    assert torch.allclose(x[0, 1], torch.from_numpy(image[..., 1]).float() / 255)


# --------------------------------------------------------------------------
# The tiny dataset other tests train on


def test_make_tiny_dataset(tmp_path):
    images, masks = make_tiny_dataset(tmp_path, n=6, size=32, seed=0)
    report = pair_folders(images, masks)
    assert len(report.pairs) == 6 and not report.problem_groups()
    data = DecodedDataset.build(report.pairs, PREP)
    for image, mask in zip(data.images, data.masks, strict=True):
        assert 0.03 < mask.mean() < 0.6
        inside, outside = image[mask == 1].mean(), image[mask == 0].mean()
        assert inside > outside + 80  # bright blobs on a dark background
    again = make_tiny_dataset(tmp_path / "again", n=6, size=32, seed=0)
    assert (again[0] / "tiny_03.png").read_bytes() == (images / "tiny_03.png").read_bytes()


# --------------------------------------------------------------------------
# Real data (CC0 Data Science Bowl 2018), when present beside the checkout


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="shared/data/dsb2018 is not present")
@pytest.mark.parametrize("kind", ["fluorescence", "histology", "brightfield"])
def test_real_data_pairs_cleanly(kind):
    images, masks = REAL_DATA / kind / "images", REAL_DATA / kind / "masks"
    report = pair_folders(images, masks)
    n = len(list(images.glob("*.png")))
    assert len(report.pairs) == n
    assert report.summary().splitlines()[1:] == []
    data = DecodedDataset.build(report.pairs[:6], PREP)
    for image, mask in zip(data.images, data.masks, strict=True):
        assert image.shape[:2] == mask.shape and image.shape[2] == 3
        assert 0 < mask.mean() < 1
    x, y = CropSampler(data, 128, seed=0).sample(4)
    assert x.shape == (4, 3, 128, 128) and 0 < float(y.mean()) < 1


# --------------------------------------------------------------------------
# Scale


@pytest.mark.slow
def test_10000_pairs_are_all_paired(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    # Four distinct 8x8 PNG pairs, each hard-linked 2,500 times: the scan opens,
    # parses and decodes every name exactly as for distinct files, and this VM
    # creates links ~20x faster than new files (keeps the test under 10 s).
    rng = np.random.default_rng(0)
    sources = []
    for k in range(4):
        pic, msk = tmp_path / f"src{k}.png", tmp_path / f"src{k}_mask.png"
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(pic)
        Image.fromarray((rng.random((8, 8)) > 0.5).astype(np.uint8) * 255).save(msk)
        sources.append((pic, msk))
    for i in range(10_000):
        pic, msk = sources[i % 4]
        try:
            os.link(pic, images / f"img_{i:05d}.png")
            os.link(msk, masks / f"img_{i:05d}_mask.png")
        except OSError:  # no hard links here: copy
            shutil.copyfile(pic, images / f"img_{i:05d}.png")
            shutil.copyfile(msk, masks / f"img_{i:05d}_mask.png")
    report = pair_folders(images, masks)  # its speed: benchmarks/pairing.py
    assert len(report.pairs) == 10_000 and not report.problem_groups()
    assert report.pairs[9_999].image.name == "img_09999.png"
    assert report.pairs[9_999].mask.name == "img_09999_mask.png"


@pytest.mark.slow
def test_20000_square_image_loads_but_bigger_is_refused(tmp_path):
    path = tmp_path / "slide.png"
    write_big_png(path, 20_000)
    assert path.stat().st_size < 5_000_000
    header = imageio.probe_image(path)
    assert header.size == (20_000, 20_000)
    image = read_image(path, Preprocessing(channels=1))
    assert image.shape == (20_000, 20_000, 1)
    assert image[0, 10_000, 0] == 0 and image[7, 10_000, 0] == 255 and image[7, 0, 0] == 0
    del image
    write_declared_png(tmp_path / "slightly_bigger.png", 20_001, 20_000)
    with pytest.raises(DataError, match="20001×20000 pixels, more than the 400 megapixel limit"):
        imageio.probe_image(tmp_path / "slightly_bigger.png")


def test_nfc_and_nfd_names_pair(tmp_path):
    images, masks = tmp_path / "i", tmp_path / "m"
    images.mkdir()
    masks.mkdir()
    _write(images / (unicodedata.normalize("NFD", "Zelle_ä") + ".png"), _grey())
    _write(masks / (unicodedata.normalize("NFC", "Zelle_ä") + "_mask.png"), blob_mask())
    assert len(pair_folders(images, masks).pairs) == 1


def test_report_type():
    report = PairingReport(Path("/a"), Path("/b"))
    assert not report.ok and report.problem_groups() == []
    assert report.summary().startswith("No pairs found in /a and /b.")
