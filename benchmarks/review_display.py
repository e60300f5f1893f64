"""The review view flipping through images: the time from "next image" to the image
on the canvas with its prediction, on a fresh cache and on a second pass (cached).

Synthetic images (bright discs on a noisy background, with masks) of ``--size``²
pixels, ``--images`` of them, reviewed with the bundled small base model (``--tiny``:
a tiny random one, for a quick check) through the real ReviewView: its worker
threads decode the images and predict them the current one first and a few ahead,
exactly as in the window. Each flip happens as soon as the previous image shows its
prediction (the fastest a user can flip); ``--dwell`` seconds of looking at each image
first lets the worker get ahead.

    python benchmarks/review_display.py --images 100 --size 1024
    python benchmarks/review_display.py --images 6 --size 256 --tiny   # a quick check

Runs offscreen unless ``DISPLAY`` is set. Figures depend on the machine and on what
else it runs: measure on a quiet one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def make_images(folder: Path, n: int, size: int) -> tuple[Path, Path]:
    import numpy as np
    from PIL import Image

    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        mask = np.zeros((size, size), bool)
        for _ in range(int(rng.integers(5, 20))):
            cy, cx = rng.integers(0, size, 2)
            r = rng.integers(size // 60 + 2, size // 15 + 3)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image = np.clip(rng.normal(35, 10, (size, size)) + 150 * mask, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(images / f"img_{i:03d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(masks / f"img_{i:03d}.png")
    return images, masks


def wait(app, condition, timeout: float = 600.0) -> None:
    """Run the event loop as the app does (asleep until there is work), looking at
    ``condition`` every millisecond: a busy loop of processEvents() would take the
    CPU (and the interpreter's lock) from the worker threads being measured."""
    from PySide6.QtCore import QEventLoop, Qt, QTimer

    if condition():
        return
    deadline = time.perf_counter() + timeout
    loop = QEventLoop()
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(1)
    timer.timeout.connect(lambda: (condition() or time.perf_counter() > deadline) and loop.quit())
    timer.start()
    loop.exec()
    timer.stop()
    if not condition():
        raise SystemExit("timed out waiting for the review view")


def flip_through(app, view, dwell: float) -> list[float]:
    """Seconds from each flip to its image and prediction on the canvas (painted)."""
    times = []
    for row in range(view.images.filter.rowCount()):
        if dwell:
            end = time.perf_counter() + dwell
            wait(app, lambda e=end: time.perf_counter() >= e)
        start = time.perf_counter()
        view.images.select_row(row)
        stem = view.current
        wait(app, lambda s=stem: view.canvas.current_stem() == s
             and view.predictions.prediction(s) is not None)
        view.canvas.viewport().repaint()  # the paint of the new image is part of showing it
        times.append(time.perf_counter() - start)
    return times


def describe(name: str, times: list[float]) -> str:
    ms = sorted(1000 * t for t in times)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    return (f"{name:<22} median {statistics.median(ms):8.1f} ms   90th percentile {p90:8.1f} ms"
            f"   worst {ms[-1]:8.1f} ms   ({len(ms)} images)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tiny", action="store_true", help="a tiny random base model")
    parser.add_argument("--dwell", type=float, default=0.0,
                        help="seconds spent on each image before the next (uncached pass)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from loragui.engine.resources import bundled_base_path
    from loragui.gui import qtfix
    from loragui.gui.review.view import ReviewView

    qtfix.keep_singletons_alive()  # as the window does: see qtfix.py

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        images, masks = make_images(Path(tmp), args.images, args.size)
        if args.tiny:
            from tests.tiny import make_tiny_base

            base = make_tiny_base(Path(tmp) / "tiny.safetensors")
        else:
            base = bundled_base_path()
            if base is None:
                raise SystemExit("no bundled base model in this checkout: use --tiny")
        view = ReviewView()
        view.resize(1400, 900)
        view.show()
        view.open(images, masks, base=str(base), adapter=None, device=args.device)
        wait(app, lambda: view.images.filter.rowCount() == args.images)
        view.images.list.sortByColumn(0, Qt.SortOrder.AscendingOrder)  # by name: a fixed order
        try:
            print(f"{args.images} images of {args.size}x{args.size}, base {Path(base).name}, "
                  f"{args.device}, dwell {args.dwell:g} s")
            uncached = flip_through(app, view, args.dwell)
            print(describe("first pass (uncached)", uncached))
            cached = flip_through(app, view, 0.0)
            print(describe("second pass (cached)", cached))
            kept = len([s for s in view.images.visible_order() if view.predictions.prediction(s)])
            print(f"predictions kept in the cache: {kept} of {args.images}; computed "
                  f"{view.predictions.computed}")
        finally:
            view.shutdown()
            view.close()


if __name__ == "__main__":
    main()
