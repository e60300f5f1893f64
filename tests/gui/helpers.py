"""Helpers for the window tests: tiny data sets, waiting for background jobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

# Settings that make a real training run take ~a second on a CPU.
TINY_TRAINING = dict(device="cpu", crop_size=32, batch_size=2, epochs=3, rank=2, alpha=4,
                     lr=1e-2, val_fraction=0.34)
TINY_OVERRIDES = dict(steps_per_epoch=4, previews=2)


def make_dataset(root: Path, n: int = 6, size: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """``root/images`` and ``root/masks``: bright blobs on a dark background."""
    rng = np.random.default_rng(seed)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        mask = np.zeros((size, size), bool)
        for _ in range(rng.integers(2, 4)):
            cy, cx = rng.integers(4, size - 4, size=2)
            r = rng.integers(3, max(4, size // 6))
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image = rng.normal(30, 8, (size, size, 3))
        image[mask] += 170
        image = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(images / f"cell_{i:02d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(masks / f"cell_{i:02d}.png")
    return images, masks


def wait_idle(qtbot, win, timeout: int = 20000) -> None:
    """Until the shown window's background jobs (its start-up thread, scans, thumbnails,
    exports) have started and are done."""
    from loragui.gui.workers import StartupWorker
    from tests.gui.watch import WorkerWatch

    watch = WorkerWatch.current
    assert watch is not None, "the no_thread_leaks fixture watches the threads"
    qtbot.waitUntil(lambda: watch.started_a(StartupWorker) and not watch.running(),
                    timeout=timeout)


def drop(widget, paths: list[Path]) -> None:
    """A real drag-enter + drop of file URLs, as from a file manager."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    centre = QPointF(widget.rect().center())
    enter = QDragEnterEvent(centre, Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted(), "the drop zone refused the drag"
    event = QDropEvent(centre, Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
