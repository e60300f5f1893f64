"""What the masks hold, in the window: the scan's proposal is shown, foreground/background
stays the choice until classes are picked, and the class list shows names and colours."""

from __future__ import annotations

from tests.classes_data import make_class_dataset
from tests.gui.helpers import wait_idle


def test_class_masks_are_offered_and_listed_once_chosen(qtbot, window, tmp_path):
    images, masks = make_class_dataset(tmp_path / "classes", n=4, size=32)
    window.load_folders(images, masks)
    qtbot.waitUntil(lambda: window.data.report is not None, timeout=10000)
    chooser = window.data.mask_kind
    assert chooser.masks_hold == "auto"  # never chosen for the user
    assert "Choose Classes" in chooser.classes.text()
    chooser.combo.setCurrentIndex(chooser.combo.findData("classes"))
    assert chooser.masks_hold == "classes"
    text = chooser.classes.text()
    assert "background" in text and "class 1" in text and "class 2" in text
    assert "#e69f00" in text  # class 1's colour
    qtbot.waitUntil(window.train_button.isEnabled, timeout=10000)
    config = window.settings.make_config(images, masks, masks_hold=chooser.masks_hold)
    assert config.masks_hold == "classes"
    wait_idle(qtbot, window)


def test_the_report_follows_what_the_masks_are_trained_as(qtbot, window, tmp_path):
    images, masks = make_class_dataset(tmp_path / "classes", n=4, size=32)
    window.load_folders(images, masks)
    qtbot.waitUntil(lambda: window.data.report is not None, timeout=10000)
    view, chooser = window.data.report_view, window.data.mask_kind

    def groups() -> list[str]:
        return [view.problems.topLevelItem(i).text(0)
                for i in range(view.problems.topLevelItemCount())]

    assert "Masks with more than two values (4)" in groups()  # trained foreground/background
    assert "look like classes" in view.summary.toolTip()
    qtbot.waitUntil(lambda: view.thumbs.count() > 0, timeout=10000)
    thumbs = view.thumbs.count()
    chooser.combo.setCurrentIndex(chooser.combo.findData("classes"))
    assert not [g for g in groups() if "more than two values" in g or "What the masks" in g]
    assert "foreground" not in view.summary.toolTip()  # the values are the classes
    assert view.thumbs.count() == thumbs and view.thumbs.isVisible()
    chooser.combo.setCurrentIndex(chooser.combo.findData("auto"))
    assert "Masks with more than two values (4)" in groups()
    wait_idle(qtbot, window)


def test_the_window_names_its_masks_hold_choice_not_the_command_line_option(qtbot, window,
                                                                            tmp_path):
    from PySide6.QtWidgets import QLabel

    images, masks = make_class_dataset(tmp_path / "classes", n=4, size=32)
    window.load_folders(images, masks)
    qtbot.waitUntil(lambda: window.data.report is not None, timeout=10000)
    view, chooser = window.data.report_view, window.data.mask_kind
    assert "Masks hold:" in [label.text() for label in chooser.findChildren(QLabel)]
    assert chooser.combo.findText("Classes (one per value)") >= 0
    group = next(view.problems.topLevelItem(i) for i in range(view.problems.topLevelItemCount())
                 if view.problems.topLevelItem(i).text(0).startswith("What the masks hold"))
    shown = {"the problem list": group.child(0).text(0), "the summary": view.summary.toolTip(),
             "the log": window.log_view.toPlainText()}
    for where, text in shown.items():
        assert "train them as classes: choose Classes under Masks hold" in text, where
        assert "--masks-hold" not in text and "--classes" not in text, where
    wait_idle(qtbot, window)


def test_object_labels_chosen_as_classes_are_refused_in_the_window_s_words(qtbot, tmp_path):
    import numpy as np
    from PIL import Image

    from loragui.engine.pairing import pair_folders
    from loragui.gui.maskkind import MaskKindChooser

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "a.png")
    Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32)).save(masks / "a.png")
    chooser = MaskKindChooser()
    qtbot.addWidget(chooser)
    chooser.set_report(pair_folders(images, masks))
    chooser.combo.setCurrentIndex(chooser.combo.findData("classes"))
    assert "To train them as objects, choose Objects under Masks hold." in chooser.problem()
    assert "--masks-hold" not in chooser.classes.text()


def test_a_choice_that_cannot_train_the_masks_blocks_train(qtbot, window, tmp_path):
    images, masks = make_class_dataset(tmp_path / "classes", n=4, size=32)
    (masks / "classes.json").write_text('{"classes": [{"id": 0, "name": "background"}]}')
    window.load_folders(images, masks)
    qtbot.waitUntil(lambda: window.data.report is not None, timeout=10000)
    chooser = window.data.mask_kind
    chooser.combo.setCurrentIndex(chooser.combo.findData("classes"))
    assert "does not list" in chooser.classes.text()
    qtbot.waitUntil(lambda: not window.train_button.isEnabled(), timeout=10000)
    assert "does not list" in window.train_blocker()
    chooser.combo.setCurrentIndex(chooser.combo.findData("auto"))
    assert chooser.problem() is None
    wait_idle(qtbot, window)


def test_curves_show_each_class_and_the_mean_in_bold(qtbot):
    from loragui.gui.plots import TrainingCurves

    curves = TrainingCurves()
    qtbot.addWidget(curves)
    curves.reset(100, 10)
    for epoch, (a, b) in enumerate([(0.2, 0.4), (0.6, 0.8)], 1):
        curves.add_epoch(epoch, epoch * 10, 0.5, (a + b) / 2)
        curves.add_classes(epoch, {"background": {"dice": 0.9}, "disc": {"dice": a},
                                   "square": {"dice": b}})
    curves.redraw()
    assert sorted(curves._class_curves) == ["disc", "square"]  # not the background
    x, y = curves._class_curves["square"].getData()
    assert list(x) == [1, 2] and list(y) == [0.4, 0.8]
    mean_pen = curves.dice_curve.opts["pen"]
    assert mean_pen.widthF() > curves._class_curves["disc"].opts["pen"].widthF() * 2
    curves.reset(100, 10)  # a new run: no class curves left
    assert curves._class_curves == {} and curves.dice_curve.opts["pen"].widthF() == 2.5
