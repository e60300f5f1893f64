"""Reading masks: which pixels are foreground, and what a scan reports about them.

Non-zero is foreground, for grey, palette (by colour), RGB and RGBA masks
alike, so label images (0 = background, 1..n = objects) work too. Lossy files
(JPEG) are thresholded at a quarter of their maximum, because compression leaves
faint non-zero noise everywhere: on JPEG copies (quality 75 and 95) of real
black-and-white nucleus masks that keeps every object pixel and adds none, while
half the maximum loses about two thirds of a label image's objects, a quarter
about a third (labels near 0 drown in the noise: no threshold recovers them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .imageio import decode_pixels, is_animated, open_image, orient, orientation

# Lossy formats: a mask saved this way has faint non-zero noise everywhere.
LOSSY_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: the multi-picture JPEG of cameras
LOSSY_THRESHOLD = 4  # a lossy mask's foreground: above its maximum divided by this
# A mask with more foreground than this share is most likely inverted.
MOSTLY_FOREGROUND = 0.95


@dataclass
class MaskInfo:
    """A decoded mask plus what a scan reports about it."""

    mask: np.ndarray  # (H, W) bool foreground
    n_values: int  # distinct values (or colours) found
    lossy: bool  # JPEG: thresholded at a quarter of the maximum instead of "non-zero"
    animated: bool
    orientation: int
    # The distinct ids (read_mask_values' meaning), sorted, when there are at most
    # MAX_LISTED_IDS of them; None beyond (object labels: their count is n_values).
    ids: tuple[int, ...] | None = None


MAX_LISTED_IDS = 256  # more distinct ids than this are object labels, never class ids


def _distinct(values: np.ndarray) -> int:
    """Number of distinct values, or colours when values is (H, W, C).

    Most masks hold one or two values; that case is settled with a few cheap
    passes before any full count, which keeps folder scans fast.
    """
    flat = values.reshape(-1, values.shape[2]) if values.ndim == 3 else values.ravel()
    first = flat[0]
    differs = flat != first
    if differs.ndim == 2:
        differs = differs.any(axis=1)
    if not differs.any():
        return 1
    second = flat[int(np.argmax(differs))]
    others = differs & (flat != second) if flat.ndim == 1 else \
        differs & (flat != second).any(axis=1)
    if not others.any():
        return 2
    if values.ndim == 3:
        if values.shape[2] == 1:
            values = values[..., 0]
        elif values.dtype == np.uint8:  # pack RGB into one integer per pixel
            packed = np.zeros(values.shape[:2], np.uint32)
            for c in range(values.shape[2]):
                packed = (packed << 8) | values[..., c]
            values = packed
        else:
            return len(np.unique(values.reshape(-1, values.shape[2]), axis=0))
    if values.dtype in (np.uint8, np.bool_):
        return int(np.count_nonzero(np.bincount(values.view(np.uint8).ravel(), minlength=2)))
    return len(np.unique(values))


def _foreground(values: np.ndarray, lossy: bool) -> np.ndarray:
    """Non-zero (any channel) is foreground; for lossy files, above a quarter of the maximum."""
    if lossy:
        top = values.max(initial=0)
        fg = values > (top / LOSSY_THRESHOLD) if top > 0 else np.zeros(values.shape, bool)
    else:
        fg = values != 0
    return fg.any(axis=2) if fg.ndim == 3 else fg


def _decode_mask(im: Image.Image) -> MaskInfo:
    arr = decode_pixels(im)
    value = orientation(im)
    arr = orient(arr, value)
    lossy = im.format in LOSSY_FORMATS
    colour = _split_alpha(arr)
    n_values = _distinct(colour)
    ids = None
    if n_values <= MAX_LISTED_IDS:
        ids = tuple(int(v) for v in _distinct_ids(_ids(im, colour, value)))
    return MaskInfo(_foreground(colour, lossy), n_values, lossy, is_animated(im), value, ids)


def _distinct_ids(ids: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an (H, W) id array (a bincount for small ids: fast)."""
    if ids.size and 0 <= ids.min() and ids.max() < 65536:
        return np.flatnonzero(np.bincount(ids.ravel()))
    return np.unique(ids)


def _ids(im: Image.Image, colour: np.ndarray, value: int) -> np.ndarray:
    """(H, W) int32 ids: the grey value (also of grey stored as RGB), the palette index of
    a palette image, or for colour masks consecutive ids in the order of the colours' RGB
    values (0: black).

    Palette indices are what a palette PNG's author painted with; two indices of one
    colour stay two ids. Colours get ids per file: files that hold the same colours
    give them the same ids.
    """
    if im.mode in ("P", "PA"):
        index = np.asarray(im)
        return orient(index[..., 0] if index.ndim == 3 else index, value).astype(np.int32)
    if colour.ndim == 2:
        return colour.astype(np.int32)
    if colour.shape[2] == 1 or (colour == colour[..., :1]).all():  # grey, stored as colour
        return colour[..., 0].astype(np.int32)
    flat = colour.reshape(-1, colour.shape[2])
    _, inverse = np.unique(flat, axis=0, return_inverse=True)
    inverse = inverse.reshape(colour.shape[:2]).astype(np.int32)
    if flat.any(axis=1).all():  # no black pixel: ids start at 1
        inverse += 1
    return inverse


def _split_alpha(arr: np.ndarray) -> np.ndarray:
    """The colour channels, or alpha where it is the only information.

    Alpha is ignored unless it is the only information: strokes painted on a
    transparent layer have one colour everywhere and differ only in alpha.
    """
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        colour, alpha = arr[..., :-1], arr[..., -1]
        if colour.min() == colour.max() and alpha.min() != alpha.max():
            return alpha
        return colour
    return arr


def read_mask_values(path: str | Path) -> np.ndarray:
    """(H, W) int32 ids of a mask, EXIF-oriented like :func:`read_mask`: the grey value,
    the palette index for palette images, or RGB colours mapped to consecutive ids
    (0 for black)."""
    with open_image(path) as im:
        value = orientation(im)
        return _ids(im, _split_alpha(orient(decode_pixels(im), value)), value)


def inspect_mask(path: str | Path) -> MaskInfo:
    """Decode a mask and describe it (used by the folder scan)."""
    with open_image(path) as im:
        return _decode_mask(im)


def read_mask(path: str | Path) -> tuple[np.ndarray, int]:
    """(H, W) bool foreground and the number of distinct values found.

    Non-zero is foreground, for grey, palette (by colour), RGB and RGBA masks
    alike; label images (0 = background, 1..n = objects) therefore work too.
    """
    info = inspect_mask(path)
    return info.mask, info.n_values
