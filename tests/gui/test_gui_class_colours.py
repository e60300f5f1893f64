"""A run of several classes in the window: the per-class curves in the run's own class
colours (made visible on the plot's background), and the results panel's per-class
figures with a swatch of each colour; a foreground/background run shows neither. A run
of objects counts them in its previews' captions."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPalette

from loragui.engine.events import EpochEvent, Preview, RunFinished, RunStarted
from loragui.engine.maskkinds import PALETTE, MaskClass, MaskMeaning
from loragui.gui.plots import MIN_LIGHTNESS_GAP, TrainingCurves, visible_on
from loragui.gui.previews import MIN_IMAGE_HEIGHT, PredictionPreviews, figures, fit_caption
from loragui.gui.training import TrainingView
from tests.gui.test_gui_training import prepare, wait_result

MEANING = MaskMeaning("classes", (MaskClass(0, "background", "#000000"),
                                  MaskClass(1, "disc", "#ff00ff"),
                                  MaskClass(2, "square", "#ffffff")))


def class_run(meaning: MaskMeaning | None):
    """A fake run_training: two epochs whose validations carry per-class figures (the
    first epoch is the best one), or none for ``meaning`` None."""
    def figures(a: float, b: float):
        if meaning is None:
            return None
        return {"background": {"dice": 0.95, "iou": 0.9}, "disc": {"dice": a, "iou": a - 0.1},
                "square": {"dice": b, "iou": b - 0.1}}

    def run_training(config, stop):
        yield RunStarted(config.out, "cpu", 4, 2, 2, 1, 2, 0, 10, 100, "lora",
                         masks=meaning.to_dict() if meaning else None)
        yield EpochEvent(0, 2, 0, None, 0.9, 0.2, 0.1, 0.2, 0.1, 0, 0.2, False,
                         classes=figures(0.1, 0.3))
        yield EpochEvent(1, 2, 1, 0.6, 0.5, 0.7, 0.6, 0.7, 0.6, 1, 0.7, True,
                         classes=figures(0.6, 0.8))
        yield EpochEvent(2, 2, 2, 0.5, 0.5, 0.65, 0.55, 0.65, 0.55, 1, 0.7, False,
                         classes=figures(0.5, 0.8))
        yield RunFinished(config.out, "", 1, 0.7, 0.2, 2, 1.0)

    return run_training


def test_class_curves_and_figures_take_the_runs_colours(qtbot, window, dataset, tiny_base,
                                                        dialogs):
    prepare(qtbot, window, dataset, tiny_base)
    window.run_training = class_run(MEANING)
    window.start_training()
    assert isinstance(wait_result(qtbot, window), RunFinished)
    curves = window.training_view.curves
    background = curves.palette().color(QPalette.ColorRole.Base)
    disc = curves._class_curves["disc"].opts["pen"].color()
    assert disc == visible_on(QColor("#ff00ff"), background)
    assert disc.hue() == QColor("#ff00ff").hue()  # the run's colour, not the palette's
    square = curves._class_curves["square"].opts["pen"].color()
    assert abs(square.lightness() - background.lightness()) >= MIN_LIGHTNESS_GAP
    # The results panel: each class at the best epoch (1), its swatch, the mean in bold.
    text = window.results.classes_label.text()
    assert window.results.classes_label.isVisible()
    assert "disc: Dice 0.600, IoU 0.500" in text and "square: Dice 0.800, IoU 0.700" in text
    assert "background:" not in text.replace("background:#333", "")  # not a class listed
    assert "0.400" not in text  # epoch 1's figures, not the last epoch's
    assert "color:#ff00ff" in text and "color:#ffffff" in text
    assert "<b>mean of the classes: Dice 0.700, IoU 0.600</b>" in text


def test_a_foreground_background_run_shows_no_class_figures(qtbot, window, dataset, tiny_base,
                                                            dialogs):
    prepare(qtbot, window, dataset, tiny_base)
    window.run_training = class_run(None)
    window.start_training()
    assert isinstance(wait_result(qtbot, window), RunFinished)
    assert window.training_view.curves._class_curves == {}
    assert not window.results.classes_label.isVisible()


def test_classes_without_run_colours_take_the_default_palette(qtbot):
    curves = TrainingCurves()
    qtbot.addWidget(curves)
    curves.reset(10, 2)
    curves.set_class_colours(["#000000", "#123456", "#654321"])
    curves.reset(10, 2)  # a new run forgets the last one's colours
    curves.add_classes(1, {"background": {"dice": 0.9}, "a": {"dice": 0.5}})
    background = curves.palette().color(QPalette.ColorRole.Base)
    assert curves._class_curves["a"].opts["pen"].color() == visible_on(QColor(PALETTE[0]),
                                                                       background)


def test_visible_on_keeps_a_distinct_colour_and_moves_a_close_one():
    white, black = QColor("#ffffff"), QColor("#101010")
    assert visible_on(QColor("#0072b2"), white) == QColor("#0072b2")
    assert visible_on(white, white).lightness() <= 255 - MIN_LIGHTNESS_GAP
    assert visible_on(QColor("#000000"), black).lightness() >= 16 + MIN_LIGHTNESS_GAP
    moved = visible_on(QColor("#f0e442"), white)  # a yellow on white: a darker yellow
    assert moved.hue() == QColor("#f0e442").hue() and moved.lightness() < 185


OBJECTS = MaskMeaning("objects", (MaskClass(0, "background", "#000000"),
                                  MaskClass(1, "object", "#ffff00"),
                                  MaskClass(2, "boundary", "#ff00ff")))


def object_preview(name: str, counts: tuple[int | None, int | None] = (23, 25)) -> Preview:
    """A preview whose prediction is its mask (Dice 1.00), with these object counts."""
    classes = np.zeros((32, 32), np.uint8)
    classes[4:12, 4:12], classes[4, 4:12] = 1, 2
    return Preview(name, np.zeros((32, 32, 3), np.uint8), classes > 0,
                   (classes > 0).astype(np.float32), classes, tuple(OBJECTS.colours), *counts)


def captions(previews: PredictionPreviews, n: int) -> list[tuple[str, str]]:
    """The first ``n`` captions as drawn (elided to their columns) and their tooltips."""
    columns = previews.view.ci.layout.columnCount()
    labels = [previews.view.ci.getItem(2 * (i // columns), i % columns) for i in range(n)]
    return [(label.text, label.toolTip()) for label in labels]


def test_an_objects_run_s_previews_count_the_predicted_and_the_true_objects(
        qtbot, window, dataset, tiny_base, dialogs):
    def run_training(config, stop):
        yield RunStarted(config.out, "cpu", 4, 2, 1, 1, 1, 0, 10, 100, "lora",
                         masks=OBJECTS.to_dict())
        yield EpochEvent(0, 1, 0, None, 0.9, 1.0, 1.0, 1.0, 1.0, 0, 1.0, False,
                         [object_preview("img_07"), object_preview("img_08", (1, 1))])
        yield RunFinished(config.out, "", 0, 1.0, 1.0, 1, 1.0)

    prepare(qtbot, window, dataset, tiny_base)
    window.run_training = run_training
    window.start_training()
    assert isinstance(wait_result(qtbot, window), RunFinished)
    previews = window.training_view.previews
    qtbot.waitUntil(lambda: previews.epoch == 0, timeout=10000)
    full = ["img_07 · Dice 1.00 · 23 objects (mask 25)", "img_08 · Dice 1.00 · 1 object (mask 1)"]
    for (shown, tip), caption in zip(captions(previews, 2), full, strict=True):
        # the column may be too narrow for one line: then the figures go on a second,
        # shortened if need be, and the tooltip says it all
        counts = caption.split(" · ")[-1]
        short = counts.replace(" objects (mask ", "/").replace(" object (mask ", "/")[:-1]
        assert shown == caption and tip == "" or tip == caption and "<br>" in shown and (
            shown.endswith(counts) or shown.endswith(short + " objects"))


LONG = "a-rather-long-file-name-of-the-validation-set-07"
COUNTS = " · Dice 1.00 · 23 objects (mask 25)"


def test_a_caption_is_shortened_in_its_name_first_then_goes_on_two_lines(qtbot):
    previews = PredictionPreviews()
    qtbot.addWidget(previews)
    previews.resize(1400, 400)
    previews.show()
    previews.show_previews([object_preview(LONG), object_preview("p", (None, None))], 3)
    qtbot.waitUntil(lambda: captions(previews, 2) == [(LONG + COUNTS, ""), ("p · Dice 1.00", "")],
                    timeout=5000)
    one_line = previews.view.ci.layout.rowMinimumHeight(0)
    previews.show_previews([object_preview(LONG)], 3)
    previews.resize(360, 400)  # room for the figures and part of the name
    qtbot.waitUntil(lambda: "…" in captions(previews, 1)[0][0], timeout=5000)
    shown, tip = captions(previews, 1)[0]
    assert shown.startswith("a-rather") and shown.endswith("set-07" + COUNTS)
    assert tip == LONG + COUNTS
    # two columns at the narrowest: two lines, the name shortened and the Dice beside it,
    # the counts below in their shorter wording, whole
    previews.resize(previews.minimumSizeHint().width(), 400)
    previews.show_previews([object_preview(LONG), object_preview(LONG)], 3)
    qtbot.waitUntil(lambda: "<br>" in captions(previews, 1)[0][0], timeout=5000)
    shown, tip = captions(previews, 1)[0]
    first, second = shown.split("<br>")
    assert first.startswith("a-r") and "…" in first and first.endswith(" · Dice 1.00")
    assert second in ("23 objects (mask 25)", "23/25 objects")
    assert tip == LONG + COUNTS
    assert previews.view.ci.layout.rowMinimumHeight(0) > one_line  # room for both lines


def test_in_the_narrowest_column_each_figure_has_a_line_and_stays_whole(qtbot):
    metrics = QFontMetrics(QFont())
    parts = figures(object_preview(LONG), 1.0)
    width = metrics.horizontalAdvance("23/25 objects") + 2
    name, dice, counts = fit_caption(metrics, LONG, parts, width)
    assert "…" in name and (dice, counts) == ("Dice 1.00", "23/25 objects")
    # a column a little narrower than the whole: the Dice beside the name, the counts below
    width = metrics.horizontalAdvance("p · Dice 1.00 · 23 objects (mask 25)") * 8 // 10
    assert fit_caption(metrics, "p", parts, width) == ["p · Dice 1.00", "23 objects (mask 25)"]


def test_captions_on_more_lines_take_room_from_the_curves_not_from_the_pictures(qtbot):
    view = TrainingView()
    qtbot.addWidget(view)
    view.resize(560, 200)  # shorter than the curves and the previews need: both at their least
    view.show()
    previews = view.previews
    previews.show_previews([object_preview(LONG) for _ in range(4)], 3)
    qtbot.waitUntil(lambda: "<br>" in captions(previews, 1)[0][0], timeout=5000)
    box = previews._items[0][1]
    qtbot.waitUntil(lambda: box.height() >= MIN_IMAGE_HEIGHT - 1, timeout=5000)
    # and the panel holds all of its grid: none of it is cut off at the panel's foot
    qtbot.waitUntil(lambda: previews.view.geometry().bottom() < previews.height(), timeout=5000)
