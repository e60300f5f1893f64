"""How fast the review canvas redraws a brush stroke on a large image.

A real :class:`~loragui.gui.review.canvas.MaskCanvas` shows a ``--size`` x
``--size`` image; a brush stroke is drawn with simulated mouse moves (the
product's own event path: mouse event, paint into the mask, render the dirty
rectangle, repaint). Each segment is timed from the mouse move to the end of
the overlay's repaint, at 1:1 and fitted to the window, and the median, 95th
percentile and worst are printed with the stroke's end (recording it in the
editing session) and the time to show a new image:

    python benchmarks/review_canvas.py --size 2048 --segments 300

``stroke_redraw`` is the function other benchmarks (benchmarks/review.py) call.
Runs offscreen unless ``DISPLAY`` is set (then on that screen, e.g. Xvfb).
A frame at 60 Hz is 16.7 ms: a segment redrawn faster is visible within a frame.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _app():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(math.ceil(q * len(ordered))) - 1)]


def stroke_redraw(size: int = 2048, segments: int = 200, brush: int = 15,
                  zoom: str = "1:1", window: tuple[int, int] = (1200, 800)) -> dict:
    """Draw one stroke of ``segments`` mouse moves on a ``size``² image and time
    each move's redraw; returns the figures in milliseconds."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    from loragui.gui.review.canvas import MaskCanvas
    from loragui.gui.review.editing import EditSession

    app = _app()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (size, size), dtype=np.uint8)
    mask = np.zeros((size, size), bool)
    mask[size // 4: size // 2, size // 4: size // 2] = True
    canvas = MaskCanvas(EditSession())
    canvas.resize(*window)
    canvas.show()
    app.processEvents()
    t0 = time.perf_counter()
    canvas.show_image("bench", image, mask)
    app.processEvents()
    show_ms = 1000 * (time.perf_counter() - t0)
    if zoom == "1:1":
        canvas.actual_pixels()
    else:
        canvas.fit_to_window()
    canvas.set_tool("brush")
    canvas.set_brush_size(brush)
    app.processEvents()
    viewport = canvas.viewport()
    item = canvas.overlay("mask")
    # A wavy stroke across the part of the view the image covers, a few screen pixels a move.
    shown = canvas.mapFromScene(canvas.sceneRect()).boundingRect().intersected(viewport.rect())
    x0, w, h = shown.left(), shown.width(), shown.height()
    points = [QPoint(int(x0 + w * 0.1 + i * (w * 0.8) / segments),
                     int(shown.top() + h / 2 + h * 0.3 * math.sin(i / 12)))
              for i in range(segments + 1)]
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     points[0])
    app.processEvents()
    times = []
    missed = 0  # moves whose repaint did not come within a second
    for pos in points[1:]:
        before = item.paints
        start = time.perf_counter()
        QTest.mouseMove(viewport, pos)
        deadline = start + 1.0
        while item.paints == before and time.perf_counter() < deadline:
            app.processEvents()
        times.append(1000 * (time.perf_counter() - start))
        missed += item.paints == before
    start = time.perf_counter()
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                       points[-1])
    app.processEvents()
    end_ms = 1000 * (time.perf_counter() - start)
    painted = int(canvas.session.current("bench").sum() - mask.sum())
    canvas.close()
    canvas.deleteLater()
    app.processEvents()
    return {"size": size, "zoom": zoom, "segments": len(times), "brush": brush,
            "median_ms": statistics.median(times), "p95_ms": _percentile(times, 0.95),
            "max_ms": max(times), "stroke_end_ms": end_ms, "show_image_ms": show_ms,
            "pixels_painted": painted, "missed": missed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="image width and height")
    parser.add_argument("--segments", type=int, default=300, help="mouse moves in the stroke")
    parser.add_argument("--brush", type=int, default=15, help="brush size in image pixels")
    args = parser.parse_args()
    platform = os.environ.get("QT_QPA_PLATFORM") or f"DISPLAY={os.environ.get('DISPLAY')}"
    print(f"brush stroke redraw on a {args.size}x{args.size} image, {args.segments} segments, "
          f"brush {args.brush} px ({platform})")
    for zoom in ("1:1", "fit"):
        r = stroke_redraw(args.size, args.segments, args.brush, zoom)
        print(f"  zoom {zoom:>3}: per segment median {r['median_ms']:.2f} ms, p95 "
              f"{r['p95_ms']:.2f} ms, worst {r['max_ms']:.2f} ms; stroke end "
              f"{r['stroke_end_ms']:.1f} ms; show image {r['show_image_ms']:.1f} ms "
              f"({r['pixels_painted']} pixels painted, {r['missed']} repaints missed)")


if __name__ == "__main__":
    main()
