"""Corrected masks: the default folder, atomic PNG writes, and no user file lost."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loragui.engine.corrections import (
    ORIGINALS,
    default_corrections_dir,
    find_correction,
    masks_of,
    save_correction,
)
from loragui.engine.errors import LoraGuiError
from loragui.engine.folders import list_folder
from loragui.engine.masks import read_mask
from loragui.engine.outputs import CORRECTIONS, MARKER, OutputRefused, read_marker
from loragui.engine.pairing import pair_folders


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def mask_of(seed: int, shape=(20, 24)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) > 0.6


@pytest.fixture
def data(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for i, stem in enumerate(("a", "b", "c")):
        Image.fromarray(np.full((20, 24), 40 * i, np.uint8)).save(images / f"{stem}.png")
    Image.fromarray(mask_of(1).astype(np.uint8)).save(masks / "a.png")  # a label mask 0/1
    Image.fromarray((mask_of(2) * 255).astype(np.uint8)).save(masks / "b_mask.tif")
    return images, masks


def test_the_default_folder_is_a_new_sibling_of_the_masks_folder(data):
    images, masks = data
    assert default_corrections_dir(masks, images) == masks.with_name("masks-corrections")
    assert default_corrections_dir(None, images) == images.with_name("images-masks")
    assert not masks.with_name("masks-corrections").exists()  # nothing is created


def test_a_folder_of_that_name_not_loragui_s_is_left_alone(data):
    images, masks = data
    taken = masks.with_name("masks-corrections")
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert default_corrections_dir(masks, images) == masks.with_name("masks-corrections-2")
    masks.with_name("masks-corrections-2").mkdir()  # an empty folder is not loragui's either
    assert default_corrections_dir(masks, images) == masks.with_name("masks-corrections-3")


def test_loragui_s_own_corrections_folder_is_proposed_again(data):
    images, masks = data
    folder = default_corrections_dir(masks, images)
    save_correction(folder, "a", mask_of(3), masks_dir=masks)
    assert read_marker(folder) == CORRECTIONS
    assert default_corrections_dir(masks, images) == folder


def test_saving_writes_a_png_equal_to_the_array_and_leaves_the_masks_alone(data):
    images, masks = data
    before = hashes(masks)
    folder = default_corrections_dir(masks, images)
    edited = {"a": mask_of(4), "b": mask_of(5), "c": mask_of(6)}  # c had no mask
    for stem, mask in edited.items():
        path = save_correction(folder, stem, mask, masks_dir=masks)
        assert path == folder / f"{stem}.png"
        with Image.open(path) as im:
            assert im.mode == "L" and im.format == "PNG"
            pixels = np.asarray(im)
        assert set(np.unique(pixels)) <= {0, 255}
        np.testing.assert_array_equal(pixels == 255, mask)
        np.testing.assert_array_equal(read_mask(path)[0], mask)
    again = mask_of(7)
    save_correction(folder, "a", again, masks_dir=masks)  # loragui's own file: replaced
    np.testing.assert_array_equal(read_mask(folder / "a.png")[0], again)
    assert hashes(masks) == before
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, "a.png", "b.png", "c.png"]


def test_a_failed_write_leaves_the_previous_correction(data, monkeypatch):
    images, masks = data
    folder = default_corrections_dir(masks, images)
    first = mask_of(8)
    save_correction(folder, "a", first, masks_dir=masks)
    kept = (folder / "a.png").read_bytes()

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(LoraGuiError, match="free some space|No space|space"):
        save_correction(folder, "a", mask_of(9), masks_dir=masks)
    assert (folder / "a.png").read_bytes() == kept
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, "a.png"]  # no temporary left


def test_a_folder_holding_other_files_is_refused_before_writing(data):
    images, masks = data
    other = data[0].parent / "elsewhere"
    other.mkdir()
    (other / "x.png").write_bytes(b"mine")
    with pytest.raises(OutputRefused, match="did not write"):
        save_correction(other, "a", mask_of(1), masks_dir=masks)
    assert hashes(other) == {"x.png": hashlib.sha256(b"mine").hexdigest()}
    with pytest.raises(OutputRefused):  # inside the masks folder: it would mix with the masks
        save_correction(masks / "sub", "a", mask_of(1), masks_dir=masks)
    assert not (masks / "sub").exists()


def test_a_bad_mask_or_name_is_one_clear_error(data, tmp_path):
    images, masks = data
    with pytest.raises(LoraGuiError, match="2-D"):
        save_correction(tmp_path / "c", "a", np.zeros((2, 3, 3), bool), masks_dir=masks)
    with pytest.raises(LoraGuiError, match="cannot name"):
        save_correction(tmp_path / "c", "../a", np.zeros((2, 3), bool), masks_dir=masks)
    assert not (tmp_path / "c").exists()


def test_into_the_masks_folder_each_original_is_kept_before_it_is_replaced(data):
    images, masks = data
    before = hashes(masks)
    a, b, c = mask_of(10), mask_of(11), mask_of(12)
    assert save_correction(masks, "a", a, masks_dir=masks) == masks / "a.png"
    assert save_correction(masks, "b", b, masks_dir=masks) == masks / "b.png"
    assert save_correction(masks, "c", c, masks_dir=masks) == masks / "c.png"
    assert hashes(masks / ORIGINALS) == before  # byte-identical, every one of them
    assert sorted(p.name for p in masks.iterdir() if p.is_file()) == ["a.png", "b.png", "c.png"]
    for stem, mask in (("a", a), ("b", b), ("c", c)):
        np.testing.assert_array_equal(read_mask(masks / f"{stem}.png")[0], mask)
    # A second save replaces loragui's own file and keeps the user's original.
    save_correction(masks, "a", mask_of(13), masks_dir=masks)
    assert hashes(masks / ORIGINALS) == before
    assert read_marker(masks) is None  # the user's folder is not marked as loragui's


def test_the_originals_folder_is_no_mask_and_pairing_takes_the_corrected_one(data):
    images, masks = data
    b = mask_of(14)
    save_correction(masks, "b", b, masks_dir=masks)
    files, _ = list_folder(masks, "masks")
    assert [f.name for f in files] == ["a.png", "b.png"]
    assert masks_of(masks, "b") == [masks / "b.png"]
    report = pair_folders(images, masks)
    pairs = {p.stem: p.mask for p in report.pairs}
    assert pairs["b"] == masks / "b.png"


def test_a_folder_of_images_and_masks_together_keeps_its_images(tmp_path):
    both = tmp_path / "both"
    both.mkdir()
    for stem in ("a", "b"):
        Image.fromarray(np.full((20, 24), 99, np.uint8)).save(both / f"{stem}.png")
    Image.fromarray(mask_of(1).astype(np.uint8) * 255).save(both / "a_mask.png")
    before = hashes(both)
    a, b = mask_of(20), mask_of(21)
    assert save_correction(both, "a", a, masks_dir=both, images_dir=both) == both / "a_mask.png"
    assert save_correction(both, "b", b, masks_dir=both, images_dir=both) == both / "b_mask.png"
    assert hashes(both)["a.png"] == before["a.png"] and hashes(both)["b.png"] == before["b.png"]
    assert hashes(both / ORIGINALS) == {"a_mask.png": before["a_mask.png"]}
    report = pair_folders(both, both)
    assert {p.stem: p.mask.name for p in report.pairs} == {"a": "a_mask.png", "b": "b_mask.png"}
    np.testing.assert_array_equal(read_mask(both / "b_mask.png")[0], b)


def test_the_images_folder_is_never_a_corrections_folder(data):
    images, masks = data
    before = hashes(images)
    with pytest.raises(OutputRefused):
        save_correction(images, "a", mask_of(1), masks_dir=masks, images_dir=images)
    assert hashes(images) == before


def test_find_correction_finds_what_was_saved(data):
    images, masks = data
    folder = default_corrections_dir(masks, images)
    assert find_correction(folder, "a") is None  # no folder yet
    save_correction(folder, "a", mask_of(1), masks_dir=masks)
    assert find_correction(folder, "a") == folder / "a.png"
    assert find_correction(folder, "A") == folder / "a.png"  # as pairing compares names
    assert find_correction(folder, "b") is None
    assert find_correction(None, "a") is None


def test_a_write_killed_midway_does_not_lock_the_folder(data):
    images, masks = data
    folder = default_corrections_dir(masks, images)
    save_correction(folder, "a", mask_of(1), masks_dir=masks)
    (folder / ".b.png.k3j2.tmp").write_bytes(b"half")  # a write the process never finished
    save_correction(folder, "b", mask_of(2), masks_dir=masks)
    np.testing.assert_array_equal(read_mask(folder / "b.png")[0], mask_of(2))


def test_a_class_correction_is_saved_as_the_class_ids_in_a_palette_png(tmp_path):
    from PIL import Image

    from loragui.engine.maskkinds import MaskClass, MaskMeaning
    from loragui.engine.masks import read_mask, read_mask_values

    meaning = MaskMeaning("classes", (MaskClass(0, "background", "#202020"),
                                      MaskClass(3, "nucleus", "#e69f00"),
                                      MaskClass(7, "membrane", "#56b4e9")))
    classes = np.zeros((6, 5), np.uint8)
    classes[1:3, 1:3] = 1
    classes[4, :] = 2
    path = save_correction(tmp_path / "fixed", "a", classes, masks_dir=None, meaning=meaning)
    saved = Image.open(path)
    assert saved.mode == "P" and saved.getpalette()[21:24] == [0x56, 0xB4, 0xE9]
    ids = read_mask_values(path)
    assert ids[1, 1] == 3 and ids[4, 0] == 7 and ids[0, 0] == 0  # the ids, not the indices
    assert (read_mask(path)[0] == (classes > 0)).all()  # background stays background
    with pytest.raises(LoraGuiError, match="class indices"):
        save_correction(tmp_path / "fixed", "b", classes > 0, masks_dir=None, meaning=meaning)
