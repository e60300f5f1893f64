"""Corrected masks: where they are saved and how (atomically, as 0/255 PNGs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .atomic import atomic_write


def default_corrections_dir(masks_dir: Path | None, images_dir: Path) -> Path:
    """A new sibling of the masks folder (of the images folder when there is none)."""
    beside = Path(masks_dir) if masks_dir is not None else Path(images_dir)
    return beside.parent / f"{beside.name}-corrections"


def save_corrected_mask(folder: Path, stem: str, mask: np.ndarray) -> Path:
    """``folder/stem.png`` (0/255), written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.png"
    image = Image.fromarray(np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8))
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    return path
