"""A tiny 3-class data set: discs (class 1) and squares (class 2) on a noisy ground."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def make_class_dataset(root: Path, n: int = 8, size: int = 48, seed: int = 0,
                       palette: bool = False) -> tuple[Path, Path]:
    """``n`` RGB images with one red disc (mask value 1) and one blue square (2)
    each; masks as grey PNGs of the class ids (or palette PNGs)."""
    rng = np.random.default_rng(seed)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        cy, cx = rng.integers(9, size // 2 - 2, 2)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= 7 ** 2] = 1
        sy, sx = rng.integers(size // 2 + 1, size - 13, 2)
        mask[sy:sy + 12, sx:sx + 12] = 2
        image = rng.normal(40, 10, (size, size, 3))
        image[mask == 1] += (170, 20, 20)  # red discs, blue squares
        image[mask == 2] += (20, 20, 170)
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(images / f"c{i}.png")
        out = Image.fromarray(mask)
        if palette:
            out = out.convert("P")
            out.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
        out.save(masks / f"c{i}.png")
    return images, masks
