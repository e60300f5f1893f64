"""What the data tests share: the messy folder, small pairs and image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from loragui.engine import imageio
from loragui.engine.pairing import pair_folders
from loragui.engine.pairing_report import Pair
from loragui.engine.preprocessing import Preprocessing
from tests.messy import (
    H,
    W,
    make_tiny_dataset,
    picture,
)

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018"
PREP = Preprocessing()


# --------------------------------------------------------------------------
# Fixtures and helpers


def tiny_pairs(root: Path, n: int = 4, size: int = 16, seed: int = 0) -> list[Pair]:
    images, masks = make_tiny_dataset(root, n=n, size=size, seed=seed)
    report = pair_folders(images, masks)
    assert report.ok and len(report.pairs) == n
    return report.pairs


def write_image(path: Path, arr: np.ndarray, **kw) -> Path:
    Image.fromarray(arr).save(path, **kw)
    return path


def grey_picture(seed: int = 0) -> np.ndarray:
    return (picture(W, H, seed) * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------


def deny_reading(monkeypatch, folder: str, name: str) -> None:
    """Make one file unreadable, as for a user without the right to read it (simulated:
    the tests may run as root, who reads everything)."""
    real_open = open

    def guarded(file, *args, **kwargs):
        if str(file).endswith(name) and folder in str(file):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(imageio, "open", guarded, raising=False)
