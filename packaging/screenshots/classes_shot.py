"""The README's screenshot of a run of several classes, from the real window.

Builds a small synthetic set of three classes (red discs, blue squares, background;
named and coloured by a classes.json), trains it in the window with the bundled base
model, and saves the window once the run has ended:

    Xvfb :97 -screen 0 1600x1000x24 &
    DISPLAY=:97 python packaging/screenshots/classes_shot.py OUT_FOLDER
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtWidgets import QApplication


def make_set(root: Path, n: int = 24, size: int = 96, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        for _ in range(3):
            cy, cx = rng.integers(10, size - 10, 2)
            r = rng.integers(5, 9)
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        for _ in range(2):
            sy, sx = rng.integers(2, size - 16, 2)
            s = rng.integers(8, 14)
            mask[sy:sy + s, sx:sx + s] = 2
        image = rng.normal(60, 32, (size, size, 3))
        image[mask == 1] += (90, 45, 20)
        image[mask == 2] += (40, 50, 90)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(images / f"s{i:02}.png")
        Image.fromarray(mask).save(masks / f"s{i:02}.png")
    (masks / "classes.json").write_text(json.dumps({"classes": [
        {"id": 0, "name": "background", "colour": "#000000"},
        {"id": 1, "name": "disc", "colour": "#e69f00"},
        {"id": 2, "name": "square", "colour": "#56b4e9"}]}))
    return images, masks


def main() -> None:
    out = Path(sys.argv[1])
    app = QApplication([])
    from loragui.gui.window import MainWindow

    def spin(seconds: float) -> None:
        end = time.time() + seconds
        while time.time() < end:
            app.processEvents()
            time.sleep(0.02)

    work = Path(tempfile.mkdtemp())
    images, masks = make_set(work / "set")
    window = MainWindow()
    window.resize(1400, 880)
    window.move(0, 0)
    window.show()
    spin(3)
    window.load_folders(images, masks)
    while window.data.pair_count != 24:
        spin(0.2)
    chooser = window.data.mask_kind
    chooser.combo.setCurrentIndex(chooser.combo.findData("classes"))
    window.settings.set_values(dict(device="cpu", epochs=10, crop_size=64, batch_size=4))
    window.config_overrides = dict(steps_per_epoch=5, previews=3, early_stop=False,
                                   out=str(work / "run"))
    spin(1)
    window.start_training()
    end = time.time() + 400
    while time.time() < end and (window.result is None or window.training()):
        spin(0.5)
    spin(3)
    window.grab().save(str(out / "classes.png"))
    print("result", window.result)
    os._exit(0)  # (the window's workers are not waited for)


if __name__ == "__main__":
    main()
