"""The review from the main window: after a run (its adapter, its split), for an
images folder alone (the base model), Predict folder's output, unsaved edits on
closing and on other folders, and "Train again" on the corrected masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loragui.engine.events import RunFinished, RunStarted
from loragui.engine.runrecord import read_run_record
from loragui.gui.review import view as view_module
from tests.gui.helpers import TINY_OVERRIDES, TINY_TRAINING


def reviewed(qtbot, window):
    """The review the window opened, once listed and predicted."""
    qtbot.waitUntil(lambda: window.reviewing.view is not None, timeout=5000)
    view = window.reviewing.view
    qtbot.waitUntil(lambda: bool(view.images.table.items) and view._listing is None, timeout=20000)  # noqa: SLF001
    qtbot.waitUntil(lambda: view.predictions.computed == len(view.images.table.items), timeout=30000)
    return view


def images_only(qtbot, window, images: Path) -> None:
    window.data.choose("images", images)
    qtbot.waitUntil(lambda: window.data.images_dir == images and not window.data.scanning,
                    timeout=10000)


@pytest.fixture
def answers(monkeypatch):
    """What the unsaved-edits question is asked, and answers in order."""
    record = {"asked": [], "answers": []}

    def ask(parent, count, doing):
        record["asked"].append((count, doing))
        return record["answers"].pop(0)

    monkeypatch.setattr(view_module, "ask_unsaved", ask)
    return record


def test_review_after_a_run_then_its_predict_folder(qtbot, window, dataset, tiny_base, tmp_path):
    from loragui.engine.train import run_training

    window.load_folders(*dataset)
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    window.settings.set_values(TINY_TRAINING)
    window.config_overrides = dict(TINY_OVERRIDES)
    window.run_training = run_training  # in this process: faster than a child
    qtbot.waitUntil(window.train_button.isEnabled, timeout=10000)
    window.start_training()
    qtbot.waitUntil(lambda: window.result is not None and not window.training(), timeout=60000)
    result = window.result
    assert isinstance(result, RunFinished), result

    assert window.run_bar.review_button.isEnabled()
    window.run_bar.review_button.click()
    view = reviewed(qtbot, window)
    assert window.reviewing.frame.isVisible()
    assert view.predictions.model == (str(tiny_base), result.output, window.run.config.device)
    validation = set(read_run_record(result.run_dir)["validation"])
    assert validation and {i.stem for i in view.images.table.items if i.split == "validation"} == validation
    assert {i.split for i in view.images.table.items} == {"training", "validation"}

    new_images = tmp_path / "new"
    new_images.mkdir()
    for name in ("x.png", "y.png"):
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(new_images / name)
    window.outputs.predict_folder(new_images, tmp_path / "new-masks")
    qtbot.waitUntil(lambda: window.reviewing.folders == (new_images, None), timeout=20000)
    view = reviewed(qtbot, window)
    assert [i.split for i in view.images.table.items] == ["unlabelled"] * 2
    assert view.predictions.model[1] == result.output



def test_an_images_folder_alone_is_reviewed_with_the_base(qtbot, window, dataset, tiny_base):
    images, _ = dataset
    images_only(qtbot, window, images)
    assert not window.train_button.isEnabled() and "review" in window.reason.text()
    window.review_action.trigger()
    view = reviewed(qtbot, window)
    assert {i.split for i in view.images.table.items} == {"unlabelled"}
    assert len(view.images.table.items) == 6
    assert view.predictions.model == (str(tiny_base), None, "auto")
    assert view.corrections_dir == images.parent / "images-masks"



def test_unsaved_edits_ask_on_close_and_on_other_folders(qtbot, window, dataset, tmp_path,
                                                         answers):
    images, masks = dataset
    window.load_folders(images, masks)
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    window.reviewing.review_current()
    view = reviewed(qtbot, window)
    stem = view.current
    view.session.apply(stem, np.ones((32, 32), bool), "brush")
    assert view.images.table.item(stem).edited

    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(other / "z.png")
    answers["answers"] = ["cancel"]
    window.reviewing.open(other, None, base=None, adapter=None)
    assert window.reviewing.folders == (images, masks)  # kept: the user cancelled
    assert answers["asked"] == [(1, "opening other folders")]

    answers["answers"] = ["cancel"]  # other folders in the Data panel: kept as they are
    window.data.choose("images", other)
    assert answers["asked"][-1] == (1, "opening other folders")
    assert not window.data.scanning and window.data.images_dir == images

    answers["answers"] = ["cancel"]  # Train: no run starts
    window.start_training()
    assert answers["asked"][-1] == (1, "training") and window.run is None

    answers["answers"] = ["cancel", "cancel", "discard"]
    window.reviewing.frame.close()
    assert window.reviewing.frame.isVisible()
    window.close()
    assert window.isVisible() and answers["asked"][-1] == (1, "quitting")
    window.close()
    assert not window.isVisible() and not window.reviewing.frame.isVisible()
    assert not (masks.parent / "masks-corrections").exists()  # discarded: nothing written


def recording_run(seen: dict):
    """A run_training that records its config and the pairs the engine makes of it."""
    from loragui.engine.pairing import pair_folders

    def run_training(config, stop):
        seen["config"] = config
        seen["pairs"] = pair_folders(config.images, config.masks).pairs
        yield RunStarted(config.out, "cpu", 4, 2, 1, 1, 1, 0, 10, 100, "lora")
        yield RunFinished(config.out, "", 1, 0.7, 0.1, 1, 1.0)

    return run_training


def test_train_again_trains_on_the_saved_corrections(qtbot, window, dataset, answers):
    images, _ = dataset
    images_only(qtbot, window, images)
    window.review_action.trigger()
    view = reviewed(qtbot, window)
    drawn = {}
    for stem in view.images.visible_order()[:2]:
        view.images.select_row(view.images.visible_order().index(stem))
        qtbot.waitUntil(lambda s=stem: view.canvas.current_stem() == s)
        drawn[stem] = np.zeros((32, 32), bool)
        drawn[stem][4:12, 6:20] = True
        view.session.apply(stem, drawn[stem], "brush")
    seen: dict = {}
    window.run_training = recording_run(seen)
    answers["answers"] = ["save"]
    view.train_button.click()
    assert answers["asked"] == [(2, "training")]
    qtbot.waitUntil(lambda: window.result is not None and not window.training(), timeout=20000)
    config = seen["config"]
    assert Path(config.images) == images and Path(config.masks) == view.corrections_dir
    assert {p.stem for p in seen["pairs"]} == set(drawn)
    for pair in seen["pairs"]:
        assert pair.mask.parent == view.corrections_dir
        assert np.array_equal(np.asarray(Image.open(pair.mask)) > 0, drawn[pair.stem])
    assert window.runs_dock.isVisible()


def test_train_again_from_a_run_starts_from_its_adapter_with_the_corrections(
        qtbot, window, dataset, tiny_base, answers, tmp_path):
    from dataclasses import fields

    from loragui.engine.config import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    if not {"init_adapter", "corrections"} <= names:
        pytest.skip("this engine has no --init-adapter / --corrections yet")
    images, masks = dataset
    window.load_folders(images, masks)
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    adapter = tmp_path / "adapter"
    window.reviewing.open(images, masks, base=str(tiny_base), adapter=None, device="cpu")
    view = reviewed(qtbot, window)
    window.reviewing.model["adapter"] = str(adapter)
    stem = view.current
    view.session.apply(stem, np.ones((32, 32), bool), "accept prediction")
    seen: dict = {}
    window.run_training = recording_run(seen)
    answers["answers"] = ["save"]
    view.train_button.click()
    qtbot.waitUntil(lambda: window.result is not None and not window.training(), timeout=20000)
    config = seen["config"]
    assert config.init_adapter == str(adapter)
    assert Path(config.corrections) == view.corrections_dir
    assert Path(config.masks) == masks
    assert (view.corrections_dir / f"{stem}.png").is_file()


def test_corrections_of_the_sample_go_with_the_users_data(qtbot, window_with_sample, dataset,
                                                          user_dirs):
    window = window_with_sample
    qtbot.waitUntil(window.sample_action.isEnabled, timeout=20000)
    window.sample_action.trigger()
    qtbot.waitUntil(lambda: window.data.pair_count == 6, timeout=10000)
    window.review_action.trigger()
    view = reviewed(qtbot, window)
    assert view.corrections_dir == user_dirs / "userdata" / "sample-corrections"
    assert view.folder_label.text() == str(view.corrections_dir)
