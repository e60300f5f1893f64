"""The review canvas on the real widget (offscreen): strokes, eraser, fill,
delete, accept, undo/redo, zoom and pan, and saving what was drawn."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QPainter, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from loragui.engine.masks import read_mask
from loragui.gui.review import painting
from loragui.gui.review.canvas import MaskCanvas
from loragui.gui.review.editing import EditSession

H, W = 120, 160
LEFT = Qt.MouseButton.LeftButton
NONE = Qt.KeyboardModifier.NoModifier
CTRL = Qt.KeyboardModifier.ControlModifier


def expected_stroke(points: list[tuple[float, float]], size: float, shape=(H, W)) -> np.ndarray:
    """Every pixel whose centre lies within size/2 of the polyline, by brute force."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    out = np.zeros(shape, bool)
    segments = list(zip(points, points[1:], strict=False)) or [(points[0], points[0])]
    for (ax, ay), (bx, by) in segments:
        vx, vy = bx - ax, by - ay
        n = vx * vx + vy * vy
        t = np.zeros_like(xx) if n == 0 else np.clip(((xx - ax) * vx + (yy - ay) * vy) / n, 0, 1)
        out |= np.hypot(xx - ax - t * vx, yy - ay - t * vy) <= size / 2
    return out


@pytest.fixture
def canvas(qtbot):
    session = EditSession()
    view = MaskCanvas(session)
    qtbot.addWidget(view)
    view.resize(420, 320)
    view.show()
    qtbot.waitExposed(view)
    image = np.linspace(0, 255, H * W).reshape(H, W).astype(np.uint8)
    view.show_image("a", image, None)
    view.actual_pixels()
    return view


def viewport_point(view: MaskCanvas, x: float, y: float) -> QPoint:
    return view.mapFromScene(QPointF(x, y))


def scene_of(view: MaskCanvas, pos: QPoint) -> tuple[float, float]:
    """Where the canvas puts the brush for a mouse at ``pos``: the centre of that screen pixel."""
    p = view.mapToScene(pos)
    half = 0.5 / view.zoom()
    return p.x() + half, p.y() + half


def drag(view: MaskCanvas, scene_points, button=LEFT, modifier=NONE) -> list[tuple[float, float]]:
    """Press at the first point, move through the others, release: the brush centres used."""
    vp = view.viewport()
    positions = [viewport_point(view, x, y) for x, y in scene_points]
    QTest.mousePress(vp, button, modifier, positions[0])
    for pos in positions[1:]:
        QTest.mouseMove(vp, pos)
    QTest.mouseRelease(vp, button, modifier, positions[-1])
    return [scene_of(view, p) for p in positions]


def click(view: MaskCanvas, x: float, y: float) -> None:
    QTest.mouseClick(view.viewport(), LEFT, NONE, viewport_point(view, x, y))


def test_a_brush_stroke_paints_exactly_the_pixels_of_its_capsules(canvas, qtbot):
    canvas.set_tool("brush")
    canvas.set_brush_size(7)
    with qtbot.waitSignal(canvas.maskChanged) as signal:
        centres = drag(canvas, [(20.3, 30.6), (60.2, 50.9), (90.7, 40.1), (91.0, 80.4)])
    assert signal.args == ["a"]
    expected = expected_stroke(centres, 7)
    np.testing.assert_array_equal(canvas.session.current("a"), expected)
    np.testing.assert_array_equal(canvas.mask(), expected)
    assert canvas.session.edited() == {"a"} and canvas.session.can_undo()
    assert canvas.session.undo_what() == "brush"


def test_a_stroke_zoomed_in_follows_the_scene_points(canvas):
    canvas.set_zoom(3.0)
    canvas.centerOn(QPointF(60, 60))
    canvas.set_brush_size(4)
    centres = drag(canvas, [(50.0, 55.0), (70.0, 62.0)])
    np.testing.assert_array_equal(canvas.session.current("a"), expected_stroke(centres, 4))


def test_a_click_with_a_brush_of_one_paints_the_pixel_under_the_cursor(canvas):
    canvas.set_brush_size(1)
    ((x, y),) = drag(canvas, [(33.5, 44.5)])
    under = canvas.mapToScene(viewport_point(canvas, 33.5, 44.5))
    assert (int(x), int(y)) == (int(under.x()), int(under.y()))
    expected = np.zeros((H, W), bool)
    expected[int(y), int(x)] = True
    np.testing.assert_array_equal(canvas.session.current("a"), expected)


def test_a_stroke_repaints_only_the_pixels_it_touched(canvas, monkeypatch):
    item = canvas.overlay("mask")
    rects = []
    original = item.update
    monkeypatch.setattr(item, "update", lambda *a: (rects.append(a), original(*a)))
    canvas.set_brush_size(5)
    vp = canvas.viewport()
    QTest.mousePress(vp, LEFT, NONE, viewport_point(canvas, 40, 40))
    rects.clear()
    QTest.mouseMove(vp, viewport_point(canvas, 44, 42))
    assert rects, "the move repainted nothing"
    for (rect,) in rects:
        assert rect.width() <= 5 + 4 + 4 and rect.height() <= 5 + 2 + 4  # the capsule, grown by 1
    QTest.mouseRelease(vp, LEFT, NONE, viewport_point(canvas, 44, 42))


def test_the_eraser_removes_exactly_its_stroke(canvas):
    full = np.ones((H, W), bool)
    canvas.session.apply("a", full, "fill")
    canvas.show_image("a", np.zeros((H, W), np.uint8), None)
    canvas.actual_pixels()
    canvas.set_tool("eraser")
    canvas.set_brush_size(10)
    centres = drag(canvas, [(30, 30), (100, 90)])
    np.testing.assert_array_equal(canvas.session.current("a"), ~expected_stroke(centres, 10))


def ring_and_dot() -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[20:60, 20:60] = True
    mask[25:55, 25:55] = False  # a ring with a hole
    mask[80:90, 100:115] = True  # a separate object
    return mask


def test_fill_fills_the_background_region_under_the_cursor(canvas):
    mask = ring_and_dot()
    canvas.session.apply("a", mask, "setup")
    canvas.set_tool("fill")
    with_hole_filled = mask.copy()
    with_hole_filled[25:55, 25:55] = True
    click(canvas, 40, 40)
    np.testing.assert_array_equal(canvas.session.current("a"), with_hole_filled)
    click(canvas, 22, 22)  # on the mask: nothing to fill, no change recorded
    assert canvas.session.undo_what() == "fill"
    canvas.session.undo()
    np.testing.assert_array_equal(canvas.mask(), mask)


def test_fill_does_not_leak_through_a_diagonal_gap():
    mask = np.zeros((6, 6), bool)
    for i in range(6):
        mask[i, 5 - i] = True  # a diagonal line: 4-connected regions on either side
    filled = painting.fill_region(mask, 0, 0)
    assert filled is not None and not filled[5, 5] and filled[0, 0] and filled[1, 3]


def test_delete_removes_the_object_under_the_cursor_only(canvas):
    mask = ring_and_dot()
    canvas.session.apply("a", mask, "setup")
    canvas.set_tool("delete")
    click(canvas, 21, 40)  # on the ring
    expected = mask.copy()
    expected[20:60, 20:60] = False
    np.testing.assert_array_equal(canvas.session.current("a"), expected)
    click(canvas, 5, 5)  # the background: nothing
    assert canvas.session.undo_what() == "delete"
    click(canvas, 107, 85)
    assert not canvas.session.current("a").any()


def test_accept_prediction_makes_it_the_mask_undoably(canvas):
    prediction = ring_and_dot()
    canvas.set_prediction(prediction)
    canvas.accept_prediction()
    np.testing.assert_array_equal(canvas.session.current("a"), prediction)
    assert canvas.session.undo_what() == "accept prediction"
    canvas.undo()
    assert not canvas.mask().any()
    with pytest.raises(ValueError):
        canvas.set_prediction(np.zeros((3, 3), bool))


def test_ctrl_z_and_ctrl_shift_z_walk_the_history_across_images(canvas, qtbot):
    canvas.set_brush_size(6)
    drag(canvas, [(20, 20), (50, 30)])
    after_a = canvas.session.current("a").copy()
    requested = []
    canvas.imageRequested.connect(requested.append)
    canvas.show_image("b", np.zeros((H, W), np.uint8), None)
    canvas.actual_pixels()
    drag(canvas, [(80, 80), (100, 60)])
    after_b = canvas.session.current("b").copy()
    QTest.keyClick(canvas, Qt.Key.Key_Z, CTRL)
    assert not canvas.mask().any() and not canvas.session.current("b").any()
    QTest.keyClick(canvas, Qt.Key.Key_Z, CTRL)  # the change on "a": the canvas asks for it
    assert requested == ["a"]
    assert not canvas.session.current("a").any()
    QTest.keyClick(canvas, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(canvas.session.current("a"), after_a)
    assert requested == ["a", "a"]
    QTest.keyClick(canvas, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(canvas.session.current("b"), after_b)
    np.testing.assert_array_equal(canvas.mask(), after_b)  # "b" is shown: redrawn in place
    assert requested == ["a", "a"]


def wheel(view: MaskCanvas, pos: QPoint, notches: float, modifiers=NONE) -> None:
    event = QWheelEvent(QPointF(pos), QPointF(view.viewport().mapToGlobal(pos)), QPoint(0, 0),
                        QPoint(0, round(120 * notches)), Qt.MouseButton.NoButton, modifiers,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), event)


def test_the_wheel_zooms_around_the_cursor_and_ctrl_wheel_sizes_the_brush(canvas):
    canvas.set_zoom(4)  # the image larger than the view: there is room to scroll
    canvas.centerOn(QPointF(80, 60))
    for target in ((100, 70), (65, 50)):
        pos = viewport_point(canvas, *target)
        before = canvas.mapToScene(pos)
        wheel(canvas, pos, 1)
        after = canvas.mapToScene(pos)
        assert abs(after.x() - before.x()) < 1 and abs(after.y() - before.y()) < 1, target
    assert canvas.zoom() == pytest.approx(4 * 1.25 ** 2)
    size = canvas.brush_size()
    wheel(canvas, pos, 2, CTRL)
    assert canvas.brush_size() > size
    assert canvas.zoom() == pytest.approx(4 * 1.25 ** 2)  # Ctrl+wheel does not zoom


def test_bracket_keys_size_the_brush_within_bounds(canvas):
    canvas.set_brush_size(1)
    QTest.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert canvas.brush_size() == 1
    QTest.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert canvas.brush_size() == 2
    for _ in range(60):
        QTest.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert canvas.brush_size() == 256


def test_fit_and_actual_pixels_and_sharp_pixels_when_zoomed_in(canvas):
    canvas.show_image("big", np.zeros((2048, 2048), np.uint8), None)
    assert canvas.zoom() < 0.2  # a new size fits the window
    assert canvas.renderHints() & QPainter.RenderHint.SmoothPixmapTransform
    canvas.actual_pixels()
    assert canvas.zoom() == 1
    canvas.set_zoom(8)
    assert not canvas.renderHints() & QPainter.RenderHint.SmoothPixmapTransform
    canvas.show_image("big2", np.zeros((2048, 2048), np.uint8), None)
    assert canvas.zoom() == 8  # the same size keeps the zoom while flipping through images
    assert canvas.current_stem() == "big2"


def test_the_pan_tool_and_the_middle_button_pan_without_painting(canvas):
    canvas.set_zoom(4)
    canvas.centerOn(QPointF(80, 60))
    for tool, button in (("pan", LEFT), ("brush", Qt.MouseButton.MiddleButton)):
        canvas.set_tool(tool)
        h, v = canvas.horizontalScrollBar().value(), canvas.verticalScrollBar().value()
        vp = canvas.viewport()
        QTest.mousePress(vp, button, NONE, QPoint(200, 150))
        QTest.mouseMove(vp, QPoint(150, 120))
        QTest.mouseRelease(vp, button, NONE, QPoint(150, 120))
        assert (canvas.horizontalScrollBar().value(), canvas.verticalScrollBar().value()) == (
            h + 50, v + 30), tool
    assert not canvas.session.current("a").any() and not canvas.session.can_undo()


def test_overlays_toggle_and_switch_to_an_outline(canvas):
    canvas.set_overlay("mask", visible=False, opacity=0.4)
    assert not canvas.overlay("mask").isVisible()
    assert canvas.overlay("mask").opacity() == pytest.approx(0.4)
    canvas.set_overlay("prediction", outline=False)
    assert not canvas.overlay("prediction").look.outline
    with pytest.raises(ValueError):
        canvas.set_overlay("labels", visible=True)
    with pytest.raises(ValueError):
        canvas.set_tool("lasso")


def test_render_draws_an_outline_a_translucent_inside_and_a_dark_rim():
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    out = np.zeros(mask.shape, np.uint32)
    painting.render(mask, painting.Look((255, 0, 0)), out)
    alpha = out >> 24
    assert (alpha[2, 2:7] == 255).all() and alpha[4, 4] == painting.FILL_ALPHA
    assert alpha[1, 4] == painting.RIM[3] and alpha[0, 0] == 0
    assert (out[2, 3] >> 16) & 0xFF == 255 and out[1, 4] & 0xFFFFFF == 0  # red edge, black rim
    outline = np.zeros_like(out)
    painting.render(mask, painting.Look((255, 0, 0), outline=True), outline)
    assert outline[4, 4] == 0 and outline[2, 4] == out[2, 4]
    # Rendering a box gives the same pixels there as rendering everything.
    part = np.zeros_like(out)
    painting.render(mask, painting.Look((255, 0, 0)), part, (slice(1, 4), slice(0, 5)))
    np.testing.assert_array_equal(part[1:4, 0:5], out[1:4, 0:5])


def test_saved_strokes_are_a_png_equal_to_the_edited_mask_and_the_originals_stay(canvas,
                                                                                  tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    stored = ring_and_dot()
    Image.fromarray(stored.astype(np.uint8) * 255).save(masks / "c.png")
    digest = hashlib.sha256((masks / "c.png").read_bytes()).hexdigest()
    canvas.show_image("c", np.zeros((H, W), np.uint8), read_mask(masks / "c.png")[0])
    canvas.actual_pixels()
    np.testing.assert_array_equal(canvas.mask(), stored)
    canvas.set_brush_size(8)
    centres = drag(canvas, [(70, 30), (140, 100)])
    folder = tmp_path / "masks-corrections"
    (path,) = canvas.session.save(folder, masks_dir=masks)
    assert path == folder / "c.png"
    with Image.open(path) as im:
        saved = np.asarray(im) == 255
    np.testing.assert_array_equal(saved, stored | expected_stroke(centres, 8))
    np.testing.assert_array_equal(saved, canvas.session.current("c"))
    assert hashlib.sha256((masks / "c.png").read_bytes()).hexdigest() == digest
    assert [p.name for p in folder.iterdir() if p.suffix == ".tmp"] == []


def test_the_redraw_benchmark_draws_its_stroke(qtbot):
    from benchmarks.review_canvas import stroke_redraw

    for zoom in ("1:1", "fit"):
        figures = stroke_redraw(size=256, segments=12, brush=5, zoom=zoom, window=(300, 200))
        assert figures["segments"] == 12 and figures["missed"] == 0, figures
        assert figures["pixels_painted"] > 12 * 5, figures


def test_space_held_pans_with_the_left_button_instead_of_painting(canvas):
    canvas.set_zoom(4)
    canvas.centerOn(QPointF(80, 60))
    h = canvas.horizontalScrollBar().value()
    vp = canvas.viewport()
    QTest.keyPress(canvas, Qt.Key.Key_Space)
    QTest.mousePress(vp, LEFT, NONE, QPoint(200, 150))
    QTest.mouseMove(vp, QPoint(160, 150))
    QTest.mouseRelease(vp, LEFT, NONE, QPoint(160, 150))
    QTest.keyRelease(canvas, Qt.Key.Key_Space)
    assert canvas.horizontalScrollBar().value() == h + 40
    assert not canvas.session.can_undo()
    drag(canvas, [(80, 60), (90, 60)])  # Space released: the brush paints again
    assert canvas.session.current("a").any()


def test_a_change_made_through_the_session_shows_on_the_canvas(canvas):
    drag(canvas, [(20, 20), (40, 40)])
    canvas.session.undo()  # e.g. the review view's Edit menu
    assert not canvas.mask().any()
    assert not (canvas.overlay("mask")._pixels >> 24).any()  # noqa: SLF001 - redrawn empty
    canvas.session.redo()
    np.testing.assert_array_equal(canvas.mask(), canvas.session.current("a"))


def test_a_closed_canvas_leaves_the_session(qtbot):
    session = EditSession()
    view = MaskCanvas(session)
    assert len(session.on_change) == 1
    from shiboken6 import Shiboken

    Shiboken.delete(view)  # the widget itself goes (as with its window), now
    assert session.on_change == []


def test_the_canvas_takes_ctrl_z_before_a_window_shortcut(qtbot):
    from PySide6.QtGui import QAction, QKeySequence
    from PySide6.QtWidgets import QMainWindow

    window = QMainWindow()
    qtbot.addWidget(window)
    fired = []
    action = QAction("Undo something else", window)
    action.setShortcut(QKeySequence.StandardKey.Undo)
    action.triggered.connect(lambda: fired.append(True))
    window.addAction(action)
    view = MaskCanvas(EditSession())
    window.setCentralWidget(view)
    window.resize(400, 300)
    window.show()
    qtbot.waitExposed(window)
    view.show_image("a", np.zeros((50, 60), np.uint8), None)
    view.set_tool("fill")
    view.actual_pixels()
    click(view, 10, 10)
    assert view.mask().all()
    window.activateWindow()
    qtbot.waitActive(window)
    view.setFocus()
    # Through the window, as a key press arrives: Qt offers it to the shortcuts first.
    QTest.keyClick(window.windowHandle(), Qt.Key.Key_Z, CTRL)
    assert not view.mask().any() and fired == []
    view.clearFocus()  # elsewhere in the window, the window's shortcut has the key
    QTest.keyClick(window.windowHandle(), Qt.Key.Key_Z, CTRL)
    assert fired == [True]


def test_a_touchpad_s_fractions_of_a_notch_step_the_brush_once_per_notch(canvas):
    canvas.set_brush_size(10)
    pos = viewport_point(canvas, 50, 50)
    for _ in range(3):
        wheel(canvas, pos, 0.25, CTRL)
    assert canvas.brush_size() == 10
    wheel(canvas, pos, 0.25, CTRL)
    assert canvas.brush_size() == 12  # 10 * 1.2


def test_a_mask_of_another_size_is_refused_and_the_image_shown_stays(canvas):
    with pytest.raises(ValueError, match="pixels"):
        canvas.show_image("odd", np.zeros((H, W), np.uint8), np.zeros((5, 5), bool))
    assert canvas.current_stem() == "a" and canvas.mask().shape == (H, W)
