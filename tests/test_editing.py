"""The editing session: one undo history across images, stored as patches."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from loragui.engine.masks import read_mask
from loragui.gui.review.editing import EditSession, changed_box


def rand(seed: int, shape=(64, 80)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) > 0.5


def blob(shape, y0, y1, x0, x1, base=None) -> np.ndarray:
    out = np.zeros(shape, bool) if base is None else base.copy()
    out[y0:y1, x0:x1] = True
    return out


def test_open_gives_the_given_mask_an_empty_one_for_none_and_the_edited_one_later():
    s = EditSession()
    given = rand(1)
    np.testing.assert_array_equal(s.open("a", given, given.shape), given)
    empty = s.open("b", None, (5, 7))
    assert empty.shape == (5, 7) and empty.dtype == bool and not empty.any()
    edited = blob(given.shape, 3, 9, 4, 20, given)
    s.apply("a", edited, "brush")
    np.testing.assert_array_equal(s.open("a", given, given.shape), edited)
    np.testing.assert_array_equal(s.current("a"), edited)
    np.testing.assert_array_equal(s.original("a"), given)
    assert s.current("never") is None
    with pytest.raises(ValueError):
        s.open("c", np.zeros((3, 3), bool), (4, 4))


def test_undo_and_redo_across_images_restore_the_exact_arrays():
    s = EditSession()
    shape = (64, 80)
    states = {"a": [rand(2)], "b": [np.zeros(shape, bool)]}
    s.open("a", states["a"][0], shape)
    s.open("b", None, shape)
    order = []
    for i, stem in enumerate(["a", "b", "a", "a", "b"]):
        new = states[stem][-1].copy()
        new[5 * i:5 * i + 9, 3 * i:3 * i + 11] ^= True
        s.apply(stem, new, f"edit {i}")
        states[stem].append(new)
        order.append(stem)
    changed = []
    while s.can_undo():
        changed.append(s.undo())
    assert changed == order[::-1]
    assert s.undo() is None
    np.testing.assert_array_equal(s.current("a"), states["a"][0])
    np.testing.assert_array_equal(s.current("b"), states["b"][0])
    assert s.edited() == set() and s.unsaved() == set()
    redone = []
    while s.can_redo():
        redone.append(s.redo())
    assert redone == order and s.redo() is None
    np.testing.assert_array_equal(s.current("a"), states["a"][-1])
    np.testing.assert_array_equal(s.current("b"), states["b"][-1])
    # Undo two steps: each image is exactly at its state after the third change.
    s.undo()
    s.undo()
    np.testing.assert_array_equal(s.current("a"), states["a"][2])
    np.testing.assert_array_equal(s.current("b"), states["b"][1])
    # A new change drops what could be redone.
    s.apply("b", states["b"][0], "clear")
    assert not s.can_redo()
    np.testing.assert_array_equal(s.current("b"), states["b"][0])


def test_a_change_stores_the_patch_of_its_bounding_box_only():
    s = EditSession()
    shape = (2048, 2048)
    s.open("big", None, shape)
    s.apply("big", blob(shape, 100, 110, 200, 230), "brush")
    change = s._undo[-1]  # noqa: SLF001 - the memory bound is the point of this test
    assert change.before.shape == (10, 30) and (change.y, change.x) == (100, 200)
    assert change.nbytes == 2 * 10 * 30
    s.apply("big", blob(shape, 100, 110, 200, 230), "nothing")  # no difference: no change
    assert len(s._undo) == 1  # noqa: SLF001


def test_the_oldest_changes_go_when_the_history_is_full():
    s = EditSession(max_history_bytes=1000)
    shape = (40, 40)
    s.open("a", None, shape)
    for i in range(10):  # each change flips a 10x40 block: 800 bytes of patches
        s.apply("a", blob(shape, 0, 10, 0, 40) if i % 2 == 0 else np.zeros(shape, bool), f"{i}")
    assert s._history_bytes <= 1000  # noqa: SLF001
    undone = 0
    while s.can_undo():
        s.undo()
        undone += 1
    assert undone == 1
    assert s.current("a").any()  # at the state after change 8, not the empty original


def test_edited_and_unsaved_follow_changes_undo_and_save(tmp_path):
    s = EditSession()
    seen = []
    s.on_change.append(seen.append)
    given = rand(3)
    s.open("a", given, given.shape)
    s.open("b", None, given.shape)
    assert s.edited() == set() and s.unsaved() == set()
    s.apply("a", ~given, "invert")
    s.apply("b", blob(given.shape, 1, 4, 1, 4), "brush")
    assert s.edited() == {"a", "b"} and s.unsaved() == {"a", "b"}
    masks = tmp_path / "masks"
    masks.mkdir()
    folder = tmp_path / "corr"
    paths = s.save(folder, masks_dir=masks)
    assert paths == [folder / "a.png", folder / "b.png"]
    np.testing.assert_array_equal(read_mask(folder / "a.png")[0], ~given)
    assert s.unsaved() == set() and s.edited() == {"a", "b"}
    s.undo()  # b back to empty: unsaved (the folder holds the drawn one), not edited
    assert s.unsaved() == {"b"} and s.edited() == {"a"}
    s.redo()  # back at what was saved
    assert s.unsaved() == set()
    assert seen == ["a", "b", "a", "b", "b", "b"]
    assert s.save(folder, masks_dir=masks) == []


def test_saving_leaves_the_original_masks_byte_identical(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    given = rand(4)
    Image.fromarray(given.astype(np.uint8) * 255).save(masks / "a.png")
    before = hashlib.sha256((masks / "a.png").read_bytes()).hexdigest()
    s = EditSession()
    s.open("a", read_mask(masks / "a.png")[0], given.shape)
    s.apply("a", blob(given.shape, 0, 30, 0, 30, given), "brush")
    (path,) = s.save(tmp_path / "corr", masks_dir=masks)
    np.testing.assert_array_equal(read_mask(path)[0], s.current("a"))
    assert hashlib.sha256((masks / "a.png").read_bytes()).hexdigest() == before


def test_clear_forgets_everything_but_keeps_the_listeners():
    s = EditSession()
    seen = []
    s.on_change.append(seen.append)
    s.open("a", None, (4, 4))
    s.apply("a", np.ones((4, 4), bool), "fill")
    s.clear()
    assert s.current("a") is None and not s.can_undo() and s.edited() == set()
    s.open("a", None, (4, 4))
    s.apply("a", np.ones((4, 4), bool), "fill")
    assert seen == ["a", "a"]


def test_changed_box():
    a = np.zeros((10, 12), bool)
    assert changed_box(a, a) is None
    b = a.copy()
    b[2, 3] = b[6, 9] = True
    assert changed_box(a, b) == (slice(2, 7), slice(3, 10))


def test_a_change_known_to_lie_within_a_box_is_recorded_the_same():
    shape = (300, 400)
    new = blob(shape, 40, 60, 100, 130)
    plain, boxed = EditSession(), EditSession()
    for s in (plain, boxed):
        s.open("a", None, shape)
    plain.apply("a", new, "brush")
    boxed.apply("a", new, "brush", within=(slice(30, 80), slice(90, 200)))
    a, b = plain._undo[-1], boxed._undo[-1]  # noqa: SLF001
    assert (a.y, a.x, a.before.shape) == (b.y, b.x, b.before.shape) == (40, 100, (20, 30))
    np.testing.assert_array_equal(boxed.current("a"), new)
    assert boxed.edited() == {"a"}
    boxed.apply("a", new, "nothing", within=(slice(0, 10), slice(0, 10)))
    assert len(boxed._undo) == 1  # noqa: SLF001


def test_edited_counts_pixels_through_overlapping_changes_and_undo():
    shape = (50, 50)
    given = blob(shape, 10, 20, 10, 20)
    s = EditSession()
    s.open("a", given, shape)
    s.apply("a", blob(shape, 10, 30, 10, 30), "grow")
    s.apply("a", given, "back by hand")  # the same pixels as the original again
    assert s.edited() == set()
    s.undo()
    assert s.edited() == {"a"}
    s.undo()
    assert s.edited() == set()
    s.redo()
    s.redo()
    assert s.edited() == set()
