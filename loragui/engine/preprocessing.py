"""Preprocessing: how raw pixels of any type become the model's normalised uint8.

A :class:`Preprocessing` is stored in every model file and every pixel goes
through :func:`normalize_image` with it, so inference normalises exactly like
training did. Normalising is two steps: :func:`plan_normalisation` learns from the
whole image what it needs (which channels, each channel's percentile range), reading
it band by band, and :func:`apply_normalisation` applies that to any rows of it. An
image too large to copy (:mod:`.bands`) goes through the same two steps one band at a
time, so both give the same bytes. Only numpy is used here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .errors import DataError

_SAMPLE = 1 << 22  # percentiles are estimated on at most ~4 M pixels per channel
_BLOCK = 1 << 22  # images are checked, sampled and rescaled in blocks of ~4 M pixels (bounded memory)


@dataclass
class Preprocessing:
    """How raw pixels become model input. Stored in model files, so inference
    normalises exactly like training did."""

    channels: int = 3  # grey is replicated to 3, alpha dropped, CMYK/YCbCr -> RGB
    method: str = "percentile"  # per-image, per-channel; "none": divide by the dtype's max
    low: float = 1.0  # percentile mapped to 0
    high: float = 99.8  # percentile mapped to 255
    # The normalised image inverted (255 - value): a run whose base model finds the
    # objects better that way trains so (see polarity.py), and predicts so.
    invert: bool = False

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) \
                or self.channels not in (1, 3):
            problems.append(f"channels must be 1 or 3, not {self.channels!r}")
        if self.method not in ("percentile", "none"):
            problems.append(f"method must be 'percentile' or 'none', not {self.method!r}")
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 <= value <= 100.0:
                problems.append(f"{name} must be a number from 0 to 100, not {value!r}")
        if not isinstance(self.invert, bool):
            problems.append(f"invert must be true or false, not {self.invert!r}")
        if not problems and self.low >= self.high:
            problems.append(f"low ({self.low}) must be below high ({self.high})")
        if problems:
            raise DataError("Invalid preprocessing settings: " + "; ".join(problems)
                            + ". If they came from a model file, the file is damaged or from a "
                            "newer loragui.")
        self.low, self.high = float(self.low), float(self.high)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Preprocessing:
        """Settings from a model file. Unknown keys are ignored (newer files may add
        some); known ones are type-checked, because the file may be hand-edited."""
        if not isinstance(d, dict):
            raise DataError(f"Invalid preprocessing settings: expected a mapping, got "
                            f"{type(d).__name__}. The model file is damaged.")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _full_scale(dtype: np.dtype) -> float:
    """The value that means "white" for a dtype when no statistics are used."""
    if dtype == np.bool_:
        return 255.0  # booleans are scaled as 0/255 bytes
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


# rows(start, stop) -> the decoded pixels of those rows: (rows, W) or (rows, W, C)
Rows = Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class Normalisation:
    """What normalising one image needs to know about the whole of it, to apply to any
    of its rows (:func:`apply_normalisation`)."""

    channels: int  # the model's input channels
    grey_rgb: bool  # three equal colour channels: one is scaled, not three
    luma: bool  # colour for a 1-channel model: scaled as its luma
    ranges: tuple[tuple[float, float], ...]  # (value mapped to 0, value mapped to 255) per channel
    invert: bool = False  # then 255 - value, after rounding (what training inverts in place)


def check_layout(shape: tuple[int, ...], dtype: np.dtype) -> None:
    """The one message for a decoded image loragui cannot normalise."""
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 2, 3, 4)) \
            or 0 in shape[:2]:
        raise DataError(f"Unsupported image layout {tuple(shape)}: loragui reads grey, "
                        "grey+alpha, RGB or RGBA images. Save the image as one of those.")
    if np.dtype(dtype).kind not in "uifb":
        raise DataError(f"Unsupported pixel type {dtype}. Save the image as 8- or 16-bit.")


def _colour(rows: np.ndarray) -> np.ndarray:
    """Decoded rows -> (rows, W, C) without alpha, booleans as 0/255."""
    if rows.dtype == np.bool_:
        rows = rows.astype(np.uint8) * np.uint8(255)
    if rows.ndim == 2:
        rows = rows[..., None]
    return rows[..., :-1] if rows.shape[2] in (2, 4) else rows


def _working(rows: np.ndarray, plan_grey: bool, plan_luma: bool) -> np.ndarray:
    """Decoded rows -> the channels that are scaled: (rows, W, 1 or 3)."""
    rows = _colour(rows)
    if plan_grey:
        return rows[..., :1]
    return luma(rows)[..., None] if plan_luma else rows


def _band_rows(width: int) -> int:
    """Rows in a band of ~_BLOCK pixels."""
    return max(1, _BLOCK // max(1, width))


def _is_grey_rgb(rows: Rows, height: int, width: int) -> bool:
    step = _band_rows(width)
    for r in range(0, height, step):
        band = _colour(rows(r, min(r + step, height)))
        if not ((band[..., 0] == band[..., 1]).all() and (band[..., 1] == band[..., 2]).all()):
            return False
    return True


def _sampled_values(rows: Rows, height: int, width: int, grey: bool,
                    use_luma: bool) -> np.ndarray:
    """(N, channels) values the percentiles are estimated on: every pixel of a small image;
    of a large one a fixed-seed random sample, which is plenty for a 20,000^2 image and,
    unlike a regular grid, cannot alias with stripes or tiles in the image."""
    step = _band_rows(width)
    starts = range(0, height, step)

    def band(r: int) -> np.ndarray:
        return _working(rows(r, min(r + step, height)), grey, use_luma)

    if height * width <= _SAMPLE:
        parts = [band(r) for r in starts]
        return np.concatenate([p.reshape(-1, p.shape[2]) for p in parts])
    rng = np.random.default_rng(0)
    ys = rng.integers(0, height, _SAMPLE)
    xs = rng.integers(0, width, _SAMPLE)
    if len(starts) == 1:
        return band(0)[ys, xs]
    # The points as sorted flat indices: each band's are one slice, in one array
    # (a 4 M-point sort takes a tenth of a second, less than gathering them).
    points = ys * width + xs
    del ys, xs
    points.sort()
    bounds = np.searchsorted(points, [r * width for r in starts] + [height * width])
    parts = []
    for r, i0, i1 in zip(starts, bounds[:-1], bounds[1:], strict=True):
        if i1 > i0:
            local = points[i0:i1] - r * width
            parts.append(band(r)[local // width, local % width])
    return np.concatenate(parts)


def _percentile_range(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """(value at ``low`` %, value at ``high`` %) of one channel's values, robustly."""
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    if values.dtype in (np.uint8, np.uint16):
        lo, hi = _histogram_percentiles(values, (low, high))
    else:
        lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    if hi <= lo:  # mostly one value (sparse spots on black): use the full range
        lo, hi = float(values.min()), float(values.max())
    return lo, hi


def _histogram_percentiles(values: np.ndarray, qs: tuple[float, float]) -> tuple[float, float]:
    """``np.percentile(values, qs)`` (linear interpolation) for 8/16-bit data
    from a histogram: one counting pass instead of a partial sort, 3-5x faster."""
    cdf = np.cumsum(np.bincount(values, minlength=2))
    n = int(cdf[-1])
    out = []
    for q in qs:
        position = q / 100 * (n - 1)
        k = int(position)
        # The k-th smallest value (0-based) is the first whose cumulative count exceeds k.
        v0, v1 = np.searchsorted(cdf, [k, min(k + 1, n - 1)], side="right")
        out.append(float(v0) + (position - k) * float(v1 - v0))
    return out[0], out[1]


def plan_normalisation(shape: tuple[int, ...], dtype: np.dtype, rows: Rows,
                       prep: Preprocessing) -> Normalisation:
    """Learn from a whole image what :func:`apply_normalisation` needs, reading it through
    ``rows`` in bands of ~4 M pixels: whether it is grey saved as RGB, and each channel's
    percentile range ("percentile"), or the dtype's range ("none")."""
    check_layout(shape, dtype)
    height, width = shape[:2]
    colours = 3 if len(shape) == 3 and shape[2] in (3, 4) else 1  # alpha is dropped
    grey = colours == 3 and _is_grey_rgb(rows, height, width)
    use_luma = prep.channels == 1 and colours == 3 and not grey
    full = _full_scale(np.dtype(dtype))
    n = 1 if grey or use_luma or colours == 1 else 3
    if prep.method == "none":
        ranges = ((0.0, full),) * n
    else:
        values = _sampled_values(rows, height, width, grey, use_luma)
        ranges = tuple(_checked(_percentile_range(values[:, c], prep.low, prep.high), full)
                       for c in range(n))
    return Normalisation(prep.channels, grey, use_luma, ranges, prep.invert)


def _checked(span: tuple[float, float], full: float) -> tuple[float, float]:
    lo, hi = span
    return (0.0, full) if hi <= lo else span  # a flat channel carries no contrast: dtype range


def apply_normalisation(plan: Normalisation, rows: np.ndarray) -> np.ndarray:
    """Decoded rows of the image ``plan`` was made from -> (rows, W, channels) uint8."""
    out = _normalised(plan, np.asarray(rows))
    if plan.invert:
        np.subtract(255, out, out=out)
    return out


def _normalised(plan: Normalisation, rows: np.ndarray) -> np.ndarray:
    arr = _working(rows, plan.grey_rgb, plan.luma)
    if arr.shape[2] == plan.channels == 1:  # the common grey model: no interleaving copy
        return _rescale(arr[..., 0], *plan.ranges[0])[..., None]
    out = np.empty(arr.shape[:2] + (plan.channels,), np.uint8)
    for c in range(arr.shape[2]):
        scaled = _rescale(arr[..., c], *plan.ranges[c])
        # Grey is replicated to every output channel. (Channel-by-channel
        # assignment from a contiguous array is ~10x faster than broadcasting.)
        for target in range(c, plan.channels) if arr.shape[2] == 1 else (c,):
            out[..., target] = scaled
    return out


def _rescale(ch: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly to 0..255 (rounded, clipped) as uint8."""
    scale = 255.0 / (hi - lo)
    if ch.dtype in (np.uint8, np.uint16):  # a lookup table is exact and fast
        values = np.arange(np.iinfo(ch.dtype).max + 1, dtype=np.float64)
        lut = np.clip((values - lo) * scale + 0.5, 0, 255).astype(np.uint8)
        return np.take(lut, ch)
    out = np.empty(ch.shape, np.uint8)
    rows = _band_rows(ch.shape[1])
    for r in range(0, ch.shape[0], rows):
        block = ch[r:r + rows].astype(np.float32)
        block -= lo
        block *= scale
        block += 0.5
        np.nan_to_num(block, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        np.clip(block, 0, 255, out=block)
        out[r:r + rows] = block
    return out


def normalize_image(arr: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Any decoded image -> (H, W, prep.channels) uint8, the way the model was trained.

    Accepts (H, W) or (H, W, C) with C in 1..4 of any dtype (bool, uint8,
    uint16, int32, float). Alpha is dropped (C = 2 or 4). "percentile" maps
    each channel's ``low``/``high`` percentiles to 0/255, so a 16-bit image
    that only uses 1 % of its range is stretched instead of coming out black;
    "none" divides by the dtype's maximum (floats are taken as 0..1).
    """
    arr = np.asarray(arr)
    plan = plan_normalisation(arr.shape, arr.dtype, lambda start, stop: arr[start:stop], prep)
    return apply_normalisation(plan, arr)


def luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (like Pillow's "L"), as float32, in row blocks to bound memory."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    out = np.empty(rgb.shape[:2], np.float32)
    rows = _band_rows(rgb.shape[1])
    for r in range(0, rgb.shape[0], rows):
        out[r:r + rows] = rgb[r:r + rows].astype(np.float32) @ weights
    return out
