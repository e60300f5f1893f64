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


def places_showing(window, dialogs, text: str) -> list[str]:
    """Where ``text`` is shown: the report box, a dialog, the log, the status bar."""
    view = window.data.report_view
    places = {"report box": view.notice.text() + view.summary.text() if view.isVisible() else "",
              "dialog": "\n".join(dialogs.texts()),
              "log": window.log_view.toPlainText(),
              "status bar": window.warning_label.text() + window.statusBar().currentMessage()}
    return [name for name, shown in places.items() if text in shown]


def test_bad_folders_show_a_message_and_the_app_stays_usable(qtbot, window, dataset, dialogs,
                                                              tmp_path):
    missing = tmp_path / "does-not-exist"
    window.data.choose("images", missing)
    notice = window.data.report_view.notice
    qtbot.waitUntil(lambda: notice.isVisible() and "does not exist" in notice.text(), timeout=10000)
    assert window.data.images_dir is None
    assert "drop a folder of images" in window.data.images_zone._text.text().lower()
    assert places_showing(window, dialogs, "does not exist") == ["report box"]
    assert "cannot be used" in window.warning_label.text()  # the quiet echo

    empty = tmp_path / "empty"
    empty.mkdir()
    drop(window.data.images_zone, [empty])
    qtbot.waitUntil(lambda: "no images" in notice.text().lower(), timeout=10000)
    assert window.data.images_dir is None
    assert not window.train_button.isEnabled()
    assert not dialogs.messages

    images, masks = dataset  # still usable
    window.load_folders(images, masks)
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    qtbot.waitUntil(window.train_button.isEnabled, timeout=10000)
    assert not notice.isVisible()  # a report of folders taken: no stale notice
    wait_idle(qtbot, window)


def test_a_rejected_folder_leaves_the_folders_in_use_shown(qtbot, window, dataset, dialogs,
                                                          tmp_path):
    """Each drop box keeps showing the folder in use and its pair count; the report
    box alone says why the new one was not taken."""
    images, masks = dataset
    window.load_folders(images, masks)
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    qtbot.waitUntil(window.train_button.isEnabled, timeout=10000)
    empty = tmp_path / "empty"
    empty.mkdir()
    note = tmp_path / "notes" / "readme.txt"
    note.parent.mkdir()
    note.write_text("not an image")
    view = window.data.report_view
    for zone, rejected in ((window.data.images_zone, empty), (window.data.masks_zone, note)):
        drop(zone, [rejected])
        qtbot.waitUntil(lambda: view.notice.isVisible() and window.data._scan is None,
                        timeout=10000)
        assert (window.data.images_dir, window.data.masks_dir) == (images, masks)
        assert window.data.pair_count == 6 and "6 pairs" in view.summary.text()
        for z, folder in ((window.data.images_zone, images), (window.data.masks_zone, masks)):
            assert folder.name in z._text.text() and "6 pairs" in z._text.text()
            assert z.toolTip() == str(folder)
        assert window.train_button.isEnabled()
        assert "no images" in view.notice.text().lower()
        message = view.notice.text().split("Not used:</b> ", 1)[1][:30]
        assert places_showing(window, dialogs, message) == ["report box"]
        qtbot.waitUntil(lambda: view.thumbs.count() == 6, timeout=10000)
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


def test_the_report_shows_each_reason_in_its_row_within_the_pane(qtbot, window, tmp_path):
    """At 1024x640 the report fits the left pane, and a file's reason is read in its
    row (wrapped), not cut at the pane's edge."""
    from PySide6.QtCore import QRect, Qt

    images, masks = make_dataset(tmp_path / "messy", n=6)
    data = (images / "cell_00.png").read_bytes()
    (images / "cell_00.png").write_bytes(data[: len(data) // 2])  # truncated
    (masks / "cell_01.png").unlink()
    window.resize(1024, 640)
    window.load_folders(images, masks)
    qtbot.waitUntil(lambda: window.data.report is not None, timeout=10000)
    tree = window.data.report_view.problems
    tree.expandAll()
    qtbot.wait(50)
    pane = window.left_scroll.viewport()
    assert tree.mapTo(window, tree.rect().topRight()).x() <= pane.mapTo(window, pane.rect()
                                                                          .topRight()).x()
    assert tree.horizontalScrollBar().maximum() == 0
    rows = [(tree.topLevelItem(i).child(j)) for i in range(tree.topLevelItemCount())
            for j in range(tree.topLevelItem(i).childCount())]
    unreadable = [r for r in rows if r.text(0).startswith("images/cell_00.png: ")]
    assert unreadable and len(unreadable[0].text(0)) > len("images/cell_00.png: ") + 10  # the reason
    for row in rows:
        rect = tree.visualItemRect(row)
        assert rect.right() <= tree.viewport().width()
        needed = tree.fontMetrics().boundingRect(QRect(0, 0, rect.width() - 8, 10_000),
                                                 Qt.TextFlag.TextWordWrap, row.text(0))
        assert needed.height() <= rect.height(), (row.text(0), needed, rect)
        assert row.toolTip(0) == row.text(0)
    assert window.data.report_view.summary.width() <= pane.width()
    wait_idle(qtbot, window)
