"""The review view with a model of several classes: the prediction and a class mask
drawn each class in its colour, a legend naming the classes; foreground/background
models keep the two single colours."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from loragui.engine.maskkinds import meaning_of
from loragui.gui.review import painting
from tests.classes_data import make_class_dataset
from tests.gui.test_gui_canvas import drag


def test_render_colours_each_class_and_outlines_where_classes_meet():
    classes = np.zeros((6, 8), np.uint8)
    classes[1:5, 1:4] = 1
    classes[1:5, 4:7] = 2  # touching class 1
    look = painting.Look((255, 212, 0), classes=((0, 0, 0), (255, 0, 0), (0, 0, 255)))
    out = np.zeros(classes.shape, np.uint32)
    painting.render(classes > 0, look, out, classes=classes)
    red, blue = painting._colours(look, (255, 0, 0)), painting._colours(look, (0, 0, 255))
    assert out[2, 2] == red[1] and out[2, 5] == blue[1]  # insides, filled in their colour
    assert out[2, 3] == red[2] and out[2, 4] == blue[2]  # where they meet: both outlines
    assert out[0, 0] == 0 and out[0, 2] == red[3]  # the background; the rim outside
    # A box alone draws what the whole image draws there.
    part = np.zeros_like(out)
    painting.render(classes > 0, look, part, (slice(1, 4), slice(2, 6)), classes=classes)
    assert np.array_equal(part[1:4, 2:6], out[1:4, 2:6])
    # Foreground of no known class (painted by hand, say) keeps the overlay's colour.
    classes[3, 2] = 7
    painting.render(classes > 0, look, out, classes=classes)
    assert out[3, 2] == painting._colours(look)[2]
    # Without class colours: the single colour, as for foreground/background.
    plain = np.zeros_like(out)
    painting.render(classes > 0, painting.Look((255, 212, 0)), plain)
    assert plain[2, 2] == painting._colours(look)[1]


@pytest.fixture
def class_base(tmp_path):
    import torch

    from loragui.engine.basemodel import save_model
    from loragui.engine.preprocessing import Preprocessing
    from loragui.engine.unet import UNet, UNetConfig

    torch.manual_seed(0)
    model = UNet(UNetConfig(width=4, depth=2, out_channels=3))
    return save_model(model, tmp_path / "classes.safetensors",
                      preprocessing=Preprocessing().to_dict())


def test_a_class_model_colours_prediction_and_mask_per_class(qtbot, tmp_path, class_base):
    from loragui.gui.review.view import ReviewView

    images, masks = make_class_dataset(tmp_path / "set", n=3, size=32)
    only_squares = np.asarray(Image.open(masks / "c2.png")).copy()
    only_squares[only_squares == 1] = 0  # two values, 0 and 2: still class 2
    Image.fromarray(only_squares).save(masks / "c2.png")
    view = ReviewView()
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    try:
        with qtbot.waitSignal(view.opened, timeout=20000):
            view.open(images, masks, base=str(class_base), adapter=None, device="cpu")
        qtbot.waitUntil(lambda: all(i.dice is not None for i in view.images.table.items),
                        timeout=30000)
        qtbot.waitUntil(lambda: view.canvas.current_stem() is not None
                        and view.canvas.overlay("prediction").classes is not None,
                        timeout=10000)
        meaning = meaning_of(3)
        assert view.meaning == meaning
        assert view.controls.legend.isVisible()
        legend = view.controls.legend.text()
        assert "class 1" in legend and "class 2" in legend and "&nbsp;background" not in legend
        assert f"color:{meaning.colours[1]}" in legend
        # The mask: edited as its classes (a class map), each drawn in its colour.
        canvas = view.canvas
        assert view.session.meaning == meaning and view.controls.paint_class_action.isVisible()
        assert [view.controls.paint_class.itemText(i) for i in range(2)] == \
            ["1 class 1", "2 class 2"]
        mask_item = canvas.overlay("mask")
        stem = canvas.current_stem()
        ids = np.asarray(Image.open(masks / f"{stem}.png"))
        assert canvas.mask().dtype == np.uint8 and np.array_equal(canvas.mask(), ids)
        inner = np.argwhere((ids == 2) & (np.roll(ids, 1, 0) == 2) & (np.roll(ids, -1, 0) == 2)
                            & (np.roll(ids, 1, 1) == 2) & (np.roll(ids, -1, 1) == 2))[0]
        expected = painting._colours(mask_item.look, painting.rgb(meaning.colours[2]))[1]
        assert mask_item._pixels[tuple(inner)] == expected
        # The prediction: the model's class map, foreground every class but 0.
        prediction = view.predictions.prediction(stem)
        assert prediction.classes.shape == ids.shape
        assert np.array_equal(prediction.mask(), prediction.classes > 0)
        # The brush paints the chosen class (key 2), the eraser background.
        QTest.keyClick(view, Qt.Key.Key_2)
        assert canvas.paint_class() == 2
        view.controls.set_tool("brush")
        canvas.set_brush_size(3)
        drag(canvas, [(3.5, 28.5), (6.5, 28.5)])
        assert (canvas.mask()[27:30, 3:7] == 2).all()
        view.controls.set_tool("eraser")
        drag(canvas, [(3.5, 28.5), (3.6, 28.5)])
        assert canvas.mask()[28, 3] == 0
        # Saved: the classes' ids, a palette PNG in their colours, read back as the mask.
        written = view.save()
        assert len(written) == 1
        saved = Image.open(written[0])
        assert saved.mode == "P" and saved.getpalette()[6:9] == list(painting.rgb(meaning.colours[2]))
        assert np.array_equal(np.asarray(saved), canvas.mask())
        from loragui.engine.masks import read_mask_values

        assert np.array_equal(read_mask_values(written[0]), canvas.mask())
        view.show_stem("c2")
        qtbot.waitUntil(lambda: view.canvas.current_stem() == "c2", timeout=10000)
        assert np.array_equal(view.canvas.mask(), only_squares)
        # Accepting the prediction makes its classes the mask.
        prediction = view.predictions.prediction("c2")
        view.canvas.accept_prediction()
        assert np.array_equal(view.canvas.mask(), prediction.classes)
    finally:
        view.shutdown()
