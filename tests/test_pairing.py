"""Listing and pairing folders: the messy folder, folder-level errors, dropped folders,
progress and stop."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from loragui.engine import imageio
from loragui.engine.dataset import DecodedDataset
from loragui.engine.errors import DataError, LoraGuiError
from loragui.engine.folders import IMAGE_SUFFIXES, find_image_mask_dirs, list_images
from loragui.engine.imageio import read_image
from loragui.engine.pairing import pair_folders
from tests.datakit import PREP, grey_picture, tiny_pairs, write_image
from tests.messy import (
    H,
    W,
    blob_mask,
    make_tiny_dataset,
)

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
    write_image(images / "a.png", grey_picture())
    write_image(masks / "b.png", blob_mask().astype(np.uint8) * 255)
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
        write_image(images / f"{stem}.png", grey_picture())
        write_image(masks / f"{stem}.png", blob_mask())
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
    write_image(masks / "a.png", blob_mask())
    with pytest.raises(DataError, match=r"holds no images \(PNG, JPEG, TIFF, BMP, GIF\)"):
        pair_folders(tmp_path / "images", masks)


def test_both_folders_empty(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="images folder .* holds no images"):
        pair_folders(tmp_path / "images", tmp_path / "masks")


def test_pair_to_dict(tmp_path):
    pair = tiny_pairs(tmp_path, n=2)[0]
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
    write_image(images / "sub" / "a.png", grey_picture())
    write_image(masks / "a.png", blob_mask())
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
        write_image(tmp_path / f"cell{i}.png", grey_picture(i))
        write_image(tmp_path / f"cell{i}_mask.png", blob_mask())
    report = pair_folders(tmp_path, tmp_path)
    assert [p.stem for p in report.pairs] == ["cell0", "cell1", "cell2"]
    assert all(p.mask.name == f"{p.stem}_mask.png" for p in report.pairs)
    assert "images and masks together" in report.summary()


def test_same_folder_without_split_is_an_error(tmp_path):
    for i in range(2):
        write_image(tmp_path / f"cell{i}.png", grey_picture(i))
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
