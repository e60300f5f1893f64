"""The Runs view: the history of run folders in the window, compared and acted on."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from tests.runfolders import make_history, make_run
from tests.test_runs import EXPECTED


@pytest.fixture
def history(user_dirs):
    return make_history(user_dirs / "userdata" / "runs")


@pytest.fixture
def win(qtbot, history):
    from loragui.gui.window import MainWindow

    w = MainWindow(background=False)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def open_runs(qtbot, win):
    win.runs_dock.raise_()  # shown for the first time: the list is read
    qtbot.waitUntil(lambda: win.runs_view.loaded, timeout=10000)
    return win.runs_view


def shown_rows(view):
    """(path, status) of the rows as the table shows them, top to bottom."""
    rows = []
    for i in range(view.proxy.rowCount()):
        row = view.model.rows[view.proxy.mapToSource(view.proxy.index(i, 0)).row()]
        rows.append((row.path, view.proxy.index(i, 2).data()))
    return rows


def test_the_runs_view_lists_every_run_folder_with_its_status(qtbot, win, history):
    view = open_runs(qtbot, win)
    statuses = dict(shown_rows(view))
    assert {kind: statuses[str(path)] for kind, path in history.items()} == EXPECTED
    dates = [view.proxy.index(i, 1).data() for i in range(view.proxy.rowCount())]
    assert dates == sorted(dates, reverse=True)  # newest first
    problem = [view.proxy.index(i, 0).data(Qt.ItemDataRole.ToolTipRole)
               for i in range(view.proxy.rowCount())]
    assert any("newer loragui" in tip for tip in problem)
    assert any("adapter (adapter/) is missing" in tip for tip in problem)


def test_the_runs_view_sorts_and_filters(qtbot, win, history):
    view = open_runs(qtbot, win)
    view.filter.setText("rank=8")
    assert [p for p, _ in shown_rows(view)] == [str(history["finished"])]
    view.filter.setText("")
    view.table.sortByColumn(10, Qt.SortOrder.AscendingOrder)  # best Dice: unreadable first
    assert shown_rows(view)[0][1] in ("damaged", "newer")


def test_compare_overlays_the_curves_of_the_selected_runs(qtbot, win, history):
    view = open_runs(qtbot, win)
    view.select_paths([str(history["finished"]), str(history["failed"])])
    assert view.buttons["compare"].isEnabled()
    view.buttons["compare"].click()
    comparison = view.comparison
    for kind in ("finished", "failed"):
        xs, ys = comparison.curves[(str(history[kind]), "dice")].getData()
        assert list(xs) == [1.0, 2.0, 3.0] and list(ys) == [0.5, 0.7, 0.8]
        xs, ys = comparison.curves[(str(history[kind]), "train_loss")].getData()
        assert list(ys) == pytest.approx([0.5, 1 / 3, 0.25])
    names = [label.text for _, label in comparison.dice_legend.items]
    assert names == ["histology 2026-11-30 12:00", "histology 2026-11-30 10:00"]
    pens = {comparison.curves[(str(history[k]), "dice")].opts["pen"].color().name()
            for k in ("finished", "failed")}
    assert len(pens) == 2  # one colour each
    assert set(comparison.differing()) == {"rank", "lr"}


def test_train_again_fills_the_settings_and_the_data_folders(qtbot, win, user_dirs, dataset):
    images, masks = dataset
    run = make_run(user_dirs / "userdata" / "runs", "again", images=str(images), rank=16,
                   lr=0.001, epochs=7, dropout=0.1, created="2026-12-01T09:00:00")
    view = open_runs(qtbot, win)
    view.select_paths([str(run)])
    view.buttons["again"].click()
    values = win.settings.values()
    assert (values["rank"], values["lr"], values["epochs"]) == (16, 0.001, 7)
    qtbot.waitUntil(lambda: win.data.images_dir is not None and win.data.masks_dir is not None,
                    timeout=10000)
    assert (win.data.images_dir, win.data.masks_dir) == (images, masks)
    assert win.config_overrides == {"dropout": 0.1}  # not in the panel: kept for the run


def test_train_again_without_the_data_folders_says_so(qtbot, win, history):
    view = open_runs(qtbot, win)
    view.select_paths([str(history["failed"])])
    view.buttons["again"].click()
    assert win.settings.values()["lr"] == 0.001
    assert win.data.images_dir is None
    assert "no longer exist" in win.log_view.toPlainText()


def test_delete_removes_that_run_folder_only(qtbot, win, history, dialogs):
    view = open_runs(qtbot, win)
    root = history["finished"].parent
    before = {p.name for p in root.iterdir()}
    view.select_paths([str(history["stopped"])])
    dialogs.answer_yes = False
    view.buttons["delete"].click()
    assert history["stopped"].is_dir()
    dialogs.answer_yes = True
    view.buttons["delete"].click()
    assert len(dialogs.questions) == 2
    assert {p.name for p in root.iterdir()} == before - {history["stopped"].name}
    qtbot.waitUntil(lambda: str(history["stopped"]) not in dict(shown_rows(view)), timeout=10000)


def test_a_running_run_cannot_be_deleted(qtbot, win, history):
    view = open_runs(qtbot, win)
    view.select_paths([str(history["running"])])
    assert not view.buttons["delete"].isEnabled()
    view.delete_selected()
    assert history["running"].is_dir()


def test_a_run_is_renamed_in_place(qtbot, win, history):
    view = open_runs(qtbot, win)
    view.select_paths([str(history["finished"])])
    index = view.table.selectionModel().selectedRows()[0]
    assert view.proxy.setData(index, "rank 8 on histology")
    assert (history["finished"] / "name.txt").read_text().strip() == "rank 8 on histology"
    assert view.selected()[0].name == "rank 8 on histology"


def test_opening_a_run_makes_its_adapter_the_one_to_export(qtbot, win, history):
    view = open_runs(qtbot, win)
    view.select_paths([str(history["finished"])])
    assert view.buttons["export"].isEnabled()
    view.buttons["review"].click()
    assert win.outputs.output() == str(Path(history["finished"]) / "adapter")
    assert win.export_action.isEnabled() and "Dice" in win.results.text.text()


def test_resume_is_offered_for_a_resumable_run_only(qtbot, win, history):
    view = open_runs(qtbot, win)
    view.select_paths([str(history["finished"])])
    assert not view.buttons["resume"].isEnabled()
    view.select_paths([str(history["resumable"])])
    assert view.buttons["resume"].isEnabled()


def test_a_run_folder_from_elsewhere_is_added(qtbot, win, tmp_path, dialogs):
    elsewhere = make_run(tmp_path / "elsewhere", "mine", created="2026-12-01T08:00:00")
    view = open_runs(qtbot, win)
    view.add_folder(str(elsewhere))
    qtbot.waitUntil(lambda: str(elsewhere) in dict(shown_rows(view)), timeout=10000)
    view.add_folder(str(tmp_path))
    assert "is not a run folder" in dialogs.texts()[-1]


def test_opening_a_run_shows_its_curves_and_best_predictions(qtbot, win, history):
    import numpy as np

    from loragui.engine.events import Preview, previews_path, write_previews

    image = np.zeros((16, 16, 3), np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 1
    write_previews(previews_path(history["finished"], 3),
                   [Preview("cell_01.png", image, mask, mask.astype(np.float32))])
    view = open_runs(qtbot, win)
    view.select_paths([str(history["finished"])])
    view.buttons["review"].click()
    qtbot.waitUntil(lambda: win.training_view is not None
                    and win.training_view.previews.names == ["cell_01.png"], timeout=20000)
    # from the base model's epoch 0 on, as the curves were drawn while the run trained
    assert list(win.training_view.curves.epochs.view()[:, 3]) == [0.1, 0.5, 0.7, 0.8]
    assert win.training_view.curves.base_dice == 0.1
    assert class_curves(win.training_view.curves) == {}  # foreground/background
    qtbot.waitUntil(lambda: win.stack.currentWidget() is win.training_view, timeout=5000)


def class_curves(curves) -> dict[str, tuple[list, list, str]]:
    """name -> (epochs, Dice, colour) of each class's curve in the Dice plot."""
    import pyqtgraph as pg

    return {item.name(): (list(item.getData()[0]), list(item.getData()[1]),
                          item.opts["pen"].color().name())
            for item in curves.dice_plot.listDataItems()
            if isinstance(item, pg.PlotDataItem) and item is not curves.dice_curve}


def test_opening_a_class_run_shows_each_class_in_its_colour(qtbot, win, history):
    from PySide6.QtGui import QColor, QPalette

    from loragui.gui.plots import visible_on

    run = make_run(history["finished"].parent, "2026-11-30_19-00-00", dice=(0.5, 0.7),
                   created="2026-11-30T19:00:00",
                   classes={"background": "#000000", "nucleus": "#ff00ff", "membrane": "#0072b2"})
    view = open_runs(qtbot, win)
    view.select_paths([str(run)])
    view.buttons["review"].click()
    qtbot.waitUntil(lambda: win.training_view is not None
                    and bool(class_curves(win.training_view.curves)), timeout=20000)
    curves = win.training_view.curves
    background = curves.palette().color(QPalette.ColorRole.Base)
    shown = class_curves(curves)
    assert shown == {  # the background is left out, as while training
        "nucleus": ([0, 1, 2], [0.05, 0.45, 0.65], visible_on(QColor("#ff00ff"), background).name()),
        "membrane": ([0, 1, 2], [0.0, 0.4, 0.6], visible_on(QColor("#0072b2"), background).name())}
    assert list(curves.epochs.view()[:, 3]) == [0.1, 0.5, 0.7]  # the mean, drawn bold
    widths = [item.opts["pen"].widthF() for item in curves.dice_plot.listDataItems()
              if item.name() in shown]
    assert curves.dice_curve.opts["pen"].widthF() > 2 * max(widths)


def test_train_again_says_when_the_base_model_is_gone(qtbot, win, user_dirs):
    run = make_run(user_dirs / "userdata" / "runs", "custom", base=str(user_dirs / "gone.safetensors"),
                   created="2026-12-01T09:30:00")
    view = open_runs(qtbot, win)
    view.select_paths([str(run)])
    view.buttons["again"].click()
    assert "gone.safetensors) no longer exists" in win.log_view.toPlainText()


def test_a_resumed_class_runs_past_comes_back_with_each_class(qtbot, tmp_path):
    from loragui.gui.history import read_earlier, show_earlier
    from loragui.gui.training import TrainingView

    run = make_run(tmp_path, "run", dice=(0.5, 0.7), status="stopped", checkpoint=True,
                   classes={"background": "#000000", "nucleus": "#ff00ff"})
    view = TrainingView()
    qtbot.addWidget(view)
    view.curves.reset(40, 4)
    show_earlier(view, read_earlier(str(run)), 4)
    view.curves.redraw()
    assert {name: shown[:2] for name, shown in class_curves(view.curves).items()} == {
        "nucleus": ([0, 1, 2], [0.05, 0.45, 0.65])}
    assert view.curves.best == (2, 0.7)
