"""Dropping folders on the window: the pairing report, thumbnails, bad folders."""

from __future__ import annotations

import shutil

from tests.gui.helpers import drop, make_dataset, wait_idle


def test_drop_two_folders_fills_report(qtbot, window, dataset, dialogs):
    images, masks = dataset
    assert not window.train_button.isEnabled()
    assert "images" in window.reason.text().lower()
    drop(window.data.images_zone, [images])
    qtbot.waitUntil(lambda: window.data.images_dir == images, timeout=10000)
    assert not window.train_button.isEnabled()
    assert "masks" in window.reason.text().lower()
    drop(window.data.masks_zone, [masks])
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    view = window.data.report_view
    assert "6" in view.summary.text()
    qtbot.waitUntil(lambda: view.thumbs.count() == 6
                    and not view.thumbs.item(5).icon().isNull(), timeout=10000)
    # Train also waits for the start-up thread, which may finish after a fast scan.
    qtbot.waitUntil(window.train_button.isEnabled, timeout=10000)
    assert "Ready" in window.reason.text()
    assert window.windowTitle().startswith("blobs")  # images/ is generic: its parent names it
    assert "--images" in window.settings.command.text() and str(images) in window.settings.command.text()
    assert not dialogs.messages
    wait_idle(qtbot, window)


def test_drop_parent_folder_fills_both(qtbot, window, dataset):
    images, masks = dataset
    drop(window.data.masks_zone, [images.parent])  # either zone takes a folder holding both
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    assert (window.data.images_dir, window.data.masks_dir) == (images, masks)
    wait_idle(qtbot, window)


def test_drop_files_uses_their_folder(qtbot, window, dataset):
    images, masks = dataset
    drop(window.data.images_zone, sorted(images.glob("*.png"))[:3])
    qtbot.waitUntil(lambda: window.data.images_dir == images, timeout=10000)
    drop(window.data.masks_zone, sorted(masks.glob("*.png")))
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    wait_idle(qtbot, window)


def test_problems_are_grouped(qtbot, window, tmp_path):
    images, masks = make_dataset(tmp_path / "messy", n=6)
    (masks / "cell_00.png").unlink()  # an image without a mask
    shutil.copy(masks / "cell_01.png", masks / "stray.png")  # a mask without an image
    window.load_folders(images, masks)
    qtbot.waitUntil(lambda: window.data.report is not None, timeout=10000)
    assert window.data.pair_count == 5
    tree = window.data.report_view.problems
    assert tree.isVisibleTo(window) and tree.topLevelItemCount() >= 1
    names = [tree.topLevelItem(i).child(j).text(0) for i in range(tree.topLevelItemCount())
             for j in range(tree.topLevelItem(i).childCount())]
    assert any("cell_00" in n for n in names) and any("stray" in n for n in names)
    wait_idle(qtbot, window)


def test_bad_folders_show_a_message_and_the_app_stays_usable(qtbot, window, dataset, dialogs,
                                                              tmp_path):
    missing = tmp_path / "does-not-exist"
    window.data.choose("images", missing)
    qtbot.waitUntil(lambda: len(dialogs.messages) == 1, timeout=10000)
    assert "does not exist" in dialogs.texts()[0]
    assert window.data.images_dir is None

    empty = tmp_path / "empty"
    empty.mkdir()
    drop(window.data.images_zone, [empty])
    qtbot.waitUntil(lambda: len(dialogs.messages) == 2, timeout=10000)
    assert "no images" in dialogs.texts()[1].lower()
    assert window.data.images_dir is None
    assert not window.train_button.isEnabled()

    images, masks = dataset  # still usable
    window.load_folders(images, masks)
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    qtbot.waitUntil(window.train_button.isEnabled, timeout=10000)
    wait_idle(qtbot, window)


def test_masks_that_match_nothing_disable_train(qtbot, window, tmp_path):
    images, _ = make_dataset(tmp_path / "a", n=3)
    other = tmp_path / "b"
    other.mkdir()
    for i in range(3):
        shutil.copy(images / f"cell_{i:02d}.png", other / f"other_{i}.png")
    window.load_folders(images, other)
    qtbot.waitUntil(lambda: window.data.report is not None or window.data.report_view
                    .summary.text().startswith("These"), timeout=10000)
    assert window.data.pair_count == 0
    assert not window.train_button.isEnabled()
    assert window.reason.text()
    wait_idle(qtbot, window)
