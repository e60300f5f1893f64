"""The review view on real widgets (offscreen): the list, its sorting and filtering,
keyboard navigation, predictions from a worker thread and their cache."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from tests.gui.helpers import make_dataset


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """Six labelled images and one without a mask."""
    images, masks = make_dataset(tmp_path / "blobs", n=6)
    Image.fromarray(np.full((32, 32, 3), 40, np.uint8)).save(images / "new_one.png")
    return images, masks


@pytest.fixture
def view(qtbot):
    from loragui.gui.review.view import ReviewView

    widget = ReviewView()
    qtbot.addWidget(widget)
    widget.resize(900, 600)
    widget.show()
    yield widget
    widget.shutdown()


def open_and_wait(qtbot, view, images, masks, base, **kwargs):
    with qtbot.waitSignal(view.opened, timeout=20000):
        view.open(images, masks, base=str(base), adapter=None, device="cpu", **kwargs)
    labelled = [i for i in view.images.table.items if i.mask is not None]
    qtbot.waitUntil(lambda: all(i.dice is not None for i in labelled), timeout=30000)
    return labelled


def shown_dice(view) -> list[float | None]:
    return [view.images.table.item(stem).dice for stem in view.images.visible_order()]


def test_the_list_is_sorted_worst_dice_first_and_by_any_column(qtbot, view, folders, tiny_base):
    images, masks = folders
    labelled = open_and_wait(qtbot, view, images, masks, tiny_base)
    assert len(labelled) == 6 and len(view.images.table.items) == 7
    scores = shown_dice(view)
    assert scores[-1] is None  # the unlabelled image has no Dice: after every score
    assert scores[:-1] == sorted(scores[:-1])
    assert len(set(scores[:-1])) > 1, "the tiny model scores the images differently"
    view.images.list.sortByColumn(0, Qt.SortOrder.AscendingOrder)  # by name
    assert view.images.visible_order() == sorted(i.stem for i in view.images.table.items)
    view.images.list.sortByColumn(2, Qt.SortOrder.DescendingOrder)
    assert shown_dice(view)[1:] == sorted(scores[:-1], reverse=True)


def test_the_list_filters_by_split(qtbot, view, folders, tiny_base):
    images, masks = folders
    open_and_wait(qtbot, view, images, masks, tiny_base, validation=["cell_01", "cell_04"])
    splits = {i.stem: i.split for i in view.images.table.items}
    assert splits["cell_01"] == splits["cell_04"] == "validation"
    assert splits["cell_00"] == "training" and splits["new_one"] == "unlabelled"
    for split, expected in (("validation", {"cell_01", "cell_04"}), ("unlabelled", {"new_one"})):
        view.images.split_filter.setCurrentIndex(view.images.split_filter.findData(split))
        assert set(view.images.visible_order()) == expected
        assert view.current in expected  # the shown image is one of the list's
    view.images.split_filter.setCurrentIndex(0)
    assert len(view.images.visible_order()) == 7


def test_keys_move_to_the_next_and_previous_image(qtbot, view, folders, tiny_base):
    images, masks = folders
    open_and_wait(qtbot, view, images, masks, tiny_base)
    order = view.images.visible_order()
    assert view.current == order[0]  # once every Dice is known: the worst image
    qtbot.waitUntil(lambda: view.canvas.current_stem() == order[0])
    view.canvas.setFocus()
    qtbot.keyClick(view.canvas, Qt.Key.Key_PageDown)
    assert view.current == order[1]
    qtbot.waitUntil(lambda: view.canvas.current_stem() == order[1])
    qtbot.keyClick(view.canvas, Qt.Key.Key_Period)
    qtbot.waitUntil(lambda: view.canvas.current_stem() == order[2])
    qtbot.keyClick(view.canvas, Qt.Key.Key_PageUp)
    qtbot.waitUntil(lambda: view.canvas.current_stem() == order[1])
    view.images.list.setFocus()
    qtbot.keyClick(view.images.list, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: view.canvas.current_stem() == order[2])


def test_predictions_come_from_a_worker_and_are_cached_per_model(qtbot, view, folders, tiny_base,
                                                                 tmp_path, monkeypatch):
    from loragui.engine import predict
    from tests.tiny import make_tiny_base

    threads = []
    real = predict.predict_probability

    def recording(*args, **kwargs):
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "predict_probability", recording)
    images, masks = folders
    open_and_wait(qtbot, view, images, masks, tiny_base)
    qtbot.waitUntil(lambda: view.predictions.computed == 7, timeout=20000)
    assert threads and threading.get_ident() not in threads
    first = {s: view.predictions.prediction(s).probability.copy() for s in view.images.visible_order()}

    view.set_model(str(tiny_base), None, "cpu")  # the same model: nothing is computed again
    view.images.step(1)
    qtbot.wait(200)
    assert view.predictions.computed == 7 and len(threads) == 7

    other = make_tiny_base(tmp_path / "other.safetensors", seed=5)
    view.set_model(str(other), None, "cpu")
    assert all(i.dice is None for i in view.images.table.items)
    assert view.predictions.prediction(view.current) is None
    qtbot.waitUntil(lambda: view.predictions.computed == 7, timeout=20000)
    assert len(threads) == 14
    assert all(i.dice is not None for i in view.images.table.items if i.mask)
    assert any(not np.array_equal(first[s], view.predictions.prediction(s).probability)
               for s in first)


def test_the_current_image_is_predicted_first(qtbot, view, folders, tiny_base, monkeypatch):
    from loragui.gui.review import predictions

    order_seen = []
    real = predictions.ModelJob.__call__

    def recording(job, item):
        order_seen.append(item.stem)
        return real(job, item)

    monkeypatch.setattr(predictions.ModelJob, "__call__", recording)
    images, masks = folders
    with qtbot.waitSignal(view.opened, timeout=20000):
        view.open(images, masks, base=str(tiny_base), adapter=None, device="cpu")
    view.images.list.sortByColumn(0, Qt.SortOrder.DescendingOrder)  # new_one, cell_05, ...
    view.images.select_row(3)
    shown = view.current
    qtbot.waitUntil(lambda: view.predictions.computed == 7, timeout=20000)
    assert order_seen.index(shown) <= 1  # (one may have been under way already)
    assert sorted(order_seen) == sorted(i.stem for i in view.images.table.items)


def test_a_result_on_its_way_is_not_computed_again(qtbot):
    """A key whose result the GUI thread has not received yet is not wanted again
    when the wanted list changes (a new focus) meanwhile."""
    from loragui.gui.review.predictions import FetchWorker

    seen, results = [], []
    b_started, b_release = threading.Event(), threading.Event()

    def fn(key):
        seen.append(key)
        if key == "b":
            b_started.set()
            b_release.wait(10)
        return key

    worker = FetchWorker(fn)
    worker.done.connect(lambda key, result: results.append(key))
    worker.want(["a", "b"])
    assert b_started.wait(10)  # "a" is computed; its result waits for the event loop
    worker.want(["a", "b", "c"])  # as a new focus asks, "a" not received yet
    b_release.set()
    qtbot.waitUntil(lambda: worker.isFinished() and len(results) >= 3, timeout=10000)
    qtbot.wait(50)  # any further result is in too
    assert seen == ["a", "b", "c"] and results == ["a", "b", "c"]


def test_a_rewritten_adapter_is_another_model(tmp_path):
    from loragui.gui.review.predictions import model_identity

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"1234")
    first = model_identity(None, str(adapter))
    assert model_identity(None, str(adapter)) == first
    (adapter / "adapter_model.safetensors").write_bytes(b"123456")
    assert model_identity(None, str(adapter)) != first


def test_an_edit_is_marked_and_rescored_and_saved_to_the_corrections_folder(
        qtbot, view, folders, tiny_base):
    images, masks = folders
    open_and_wait(qtbot, view, images, masks, tiny_base)
    stem = view.current
    qtbot.waitUntil(lambda: view.canvas.current_stem() == stem)
    item = view.images.table.item(stem)
    prediction = view.predictions.prediction(stem).mask()
    view.session.apply(stem, prediction, "accept prediction")
    assert item.edited and item.dice == 1.0
    assert view.save_button.isEnabled()
    assert view.corrections_dir == masks.parent / f"{masks.name}-corrections"
    written = view.save()
    assert written == [view.corrections_dir / f"{stem}.png"]
    assert np.array_equal(np.asarray(Image.open(written[0])) > 0, prediction)
    assert item.mask == written[0] and item.corrected
    assert not view.session.unsaved() and not view.save_button.isEnabled()
