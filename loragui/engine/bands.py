"""Large images read band by band, never as a full-size numpy copy.

Pillow keeps a decoded RGB image at four bytes a pixel (1.6 GB at 20,000²); a numpy
copy of it (1.2 GB), the normalised copy and their temporaries on top would need more
than 6 GB. So a large image stays in Pillow's decoded copy only, and
:class:`ImageBands` hands out the normalised pixels of any rows of it: one pass over
its bands plans the normalisation (:func:`.preprocessing.plan_normalisation`, the
same code :func:`.imageio.read_image` runs on the whole array), and each band asked
for is decoded to numpy and normalised alone. The pixels are byte for byte those
:func:`.imageio.read_image` gives. Only Pillow and numpy are used; no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from .imageio import (
    UnreadableFileError,
    decode_pixels,
    failure_reason,
    open_image,
    orientation,
    read_image,
)
from .preprocessing import Normalisation, Preprocessing, apply_normalisation, plan_normalisation

# Images above this many pixels are read in bands. Below it the in-memory path's peak
# (Pillow's copy, the numpy copy and the normalised one: ~11 bytes a pixel for RGB,
# 0.7 GB at 64 Mpx) fits a laptop beside the model, and one array is simpler for every
# consumer (the objects' intensities, the window's previews).
LARGE_PIXELS = 64_000_000

_CHUNK = 1 << 22  # rows are decoded and normalised ~4 M pixels at a time


class RowSource(Protocol):
    """An image given a band of rows at a time (what :func:`.tiling.tiled` accepts
    besides an array)."""

    shape: tuple[int, int, int]  # (height, width, channels) of the normalised image

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as (stop - start, width, channels) uint8."""
        ...


class ImageBands:
    """One decoded image, normalised for the model a band of rows at a time."""

    def __init__(self, path: str | Path, im: Image.Image, prep: Preprocessing) -> None:
        self.path = Path(path)
        self._im = im
        width, height = im.size
        first = self._decoded(0, 1)
        shape = (height, width) + first.shape[2:]
        self.plan: Normalisation = plan_normalisation(shape, first.dtype, self._decoded, prep)
        self.shape = (height, width, prep.channels)

    def _decoded(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` decoded as :func:`.imageio.decode_pixels` decodes the
        whole image (a crop keeps the mode, palette and transparency)."""
        try:
            return decode_pixels(self._im.crop((0, start, self._im.width, stop)))
        except Exception as exc:  # noqa: BLE001 - a damaged file is reported, not crashed on
            raise UnreadableFileError(self.path, failure_reason(exc)) from exc

    def rows(self, start: int, stop: int) -> np.ndarray:
        # in chunks, so that the decoded rows (Pillow's crop, its numpy copy) stay small
        step = max(1, _CHUNK // self.shape[1])
        out = np.empty((stop - start,) + self.shape[1:], np.uint8)
        for r in range(start, stop, step):
            end = min(r + step, stop)
            out[r - start:end - start] = apply_normalisation(self.plan, self._decoded(r, end))
        return out

    def whole(self) -> np.ndarray:
        """The normalised image at full size, for the few uses that need all of it."""
        return self.rows(0, self.shape[0])


def load_image(path: str | Path, prep: Preprocessing, *,
               large: int | None = None) -> np.ndarray | ImageBands:
    """The image at ``path`` normalised for the model: as an array (:func:`.imageio.
    read_image`), or, above ``large`` pixels (default :data:`LARGE_PIXELS`), as
    :class:`ImageBands`. Raises :class:`.imageio.UnreadableFileError` naming the file,
    for a damaged one also when the damage is found while the bands are planned."""
    large = LARGE_PIXELS if large is None else large
    with open_image(path) as im:
        # A rotated image falls back to the whole array: its shown rows are stored
        # columns, and EXIF rotation comes from cameras, whose photos stay far below
        # LARGE_PIXELS, while the scanners of large slides write none.
        if im.width * im.height > large and orientation(im) == 1:
            im.load()  # decoding errors: UnreadableFileError from open_image
            return ImageBands(path, im, prep)
    return read_image(path, prep)
