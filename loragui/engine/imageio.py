"""Reading the images and masks users actually have, and normalising them.

Users' folders hold 8-bit PNGs next to 16-bit TIFFs from a microscope, float
TIFFs from an analysis script, CMYK JPEGs from a print shop, phone photos that
are stored sideways with an EXIF rotation flag, animated GIFs and, sometimes,
files that are truncated or hostile. Everything here turns those into one of
two things: a normalised ``(H, W, C)`` uint8 array, or an
:class:`UnreadableFileError` that says which file and why.

Two rules keep training and inference identical:

* every pixel goes through :func:`normalize_image` with the
  :class:`Preprocessing` that is stored in the model file, and
* EXIF orientation is applied the same way everywhere (:func:`orient`).

Only Pillow and numpy are used; nothing here imports torch or Qt.
"""

from __future__ import annotations

import errno
import os
import struct
import unicodedata
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"})

# Largest image we agree to decode, checked against the size a file *declares*
# before any pixel is decoded. 20,000 x 20,000 (a whole-slide overview) still
# loads; a 100,000 x 100,000 "decompression bomb" is refused.
MAX_PIXELS = 400_000_000

# We do that check ourselves (with a message that names the file and its size),
# so Pillow's own must not get in first: it would refuse a legitimate 20,000^2
# slide, and between 89 and 179 megapixels it only warns.
Image.MAX_IMAGE_PIXELS = None

# Lossy formats: a mask saved this way has faint non-zero noise everywhere.
LOSSY_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: the multi-picture JPEG of cameras

# EXIF orientation -> numpy re-indexing; the same table as ImageOps.exif_transpose,
# done on arrays so it works for every dtype (16-bit, float) alike.
_ORIENT = {
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # transpose
    6: lambda a: np.rot90(a, -1),  # stored rotated 90 degrees anticlockwise
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # transverse
    8: lambda a: np.rot90(a, 1),  # stored rotated 90 degrees clockwise
}

_SAMPLE = 1 << 22  # percentiles are estimated on at most ~4 M pixels per channel
_BLOCK = 1 << 22  # float images are rescaled in blocks of ~4 M pixels (bounded memory)


class UnreadableFileError(DataError):
    """One file cannot be used; ``reason`` is a short phrase for a report list."""

    def __init__(self, path: str | Path, reason: str,
                 advice: str = "Re-save it as PNG or TIFF, or remove it.") -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"Cannot read {self.path.name}: {reason}. {advice}")


# --------------------------------------------------------------------------
# Preprocessing settings


@dataclass
class Preprocessing:
    """How raw pixels become model input. Stored in model files, so inference
    normalises exactly like training did."""

    channels: int = 3  # grey is replicated to 3, alpha dropped, CMYK/YCbCr -> RGB
    method: str = "percentile"  # per-image, per-channel; "none": divide by the dtype's max
    low: float = 1.0  # percentile mapped to 0
    high: float = 99.8  # percentile mapped to 255

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


# --------------------------------------------------------------------------
# Opening files safely


def _reason(exc: BaseException) -> str:
    """A short phrase for a person, from whatever opening or decoding raised."""
    if isinstance(exc, UnreadableFileError):
        return exc.reason
    if isinstance(exc, FileNotFoundError):
        return "the file no longer exists (moved or deleted?)"
    if isinstance(exc, PermissionError):
        return "permission denied (check the file's access rights)"
    if isinstance(exc, IsADirectoryError):
        return "it is a folder, not a file"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read (unknown format or damaged header)"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode it"
    if isinstance(exc, DataError):
        return str(exc)
    text = str(exc)
    lowered = text.lower()
    if "truncated" in lowered or "broken data stream" in lowered or isinstance(exc, EOFError):
        return "the file is truncated (an incomplete copy or download?)"
    if isinstance(exc, (SyntaxError, ValueError)) or "decod" in lowered or "error -" in lowered:
        return f"damaged image data ({text or type(exc).__name__})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def _open(path: str | Path) -> Iterator[tuple[Image.Image, Any]]:
    """(lazily opened image, its file object); see :func:`open_image`."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise UnreadableFileError(path, "the file is empty (0 bytes)")
            with Image.open(f) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise UnreadableFileError(
                        path, f"declares {width}×{height} pixels, more than the "
                              f"{MAX_PIXELS // 1_000_000} megapixel limit",
                        "If the image is real, cut it into tiles; if not, remove it.")
                if width == 0 or height == 0:
                    raise UnreadableFileError(path, f"declares {width}×{height} pixels (empty)")
                yield im, f
    except UnreadableFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a file is reported, not crashed on
        raise UnreadableFileError(path, _reason(exc)) from exc


@contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """Open ``path`` lazily (header only) after refusing oversized images.

    The size check uses the size the file *declares*, before any pixel is
    decoded. Every failure, while opening or inside the ``with`` block
    (decoding), comes out as :class:`UnreadableFileError` naming the file.
    """
    with _open(path) as (im, _):
        yield im


def orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8) a viewer would apply; 1 when there is none.

    PNG is special-cased because Pillow's ``PngImageFile.getexif`` decodes the
    whole image when the header has no EXIF chunk, and scans must stay cheap.
    """
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block just means "no rotation"
        return 1
    return value if value in _ORIENT else 1


def orient(arr: np.ndarray, value: int) -> np.ndarray:
    """Apply EXIF orientation ``value`` to an (H, W, ...) array."""
    fix = _ORIENT.get(value)
    return np.ascontiguousarray(fix(arr)) if fix else arr


def oriented_size(size: tuple[int, int], value: int) -> tuple[int, int]:
    """(width, height) as shown, for a stored (width, height) and an orientation."""
    return (size[1], size[0]) if value in (5, 6, 7, 8) else size


def is_animated(im: Image.Image) -> bool:
    """More than one frame (animated GIF/PNG, multi-page TIFF)."""
    try:
        return bool(getattr(im, "is_animated", False))
    except Exception:  # noqa: BLE001 - a broken second frame: the first is still usable
        return False


def _tail_is_complete(im: Image.Image, f: Any) -> bool:
    """Cheap test that the file is not cut short, from its last bytes only.

    False means "suspicious", not "broken": the caller then decodes to be sure
    (JPEGs may carry trailing bytes after their end marker and still be fine).
    """
    fmt = im.format
    size = os.fstat(f.fileno()).st_size
    if fmt == "TIFF":
        tags = getattr(im, "tag_v2", {})
        offsets = tags.get(273) or tags.get(324)  # StripOffsets / TileOffsets
        counts = tags.get(279) or tags.get(325)  # StripByteCounts / TileByteCounts
        if not offsets or not counts:
            return False
        offsets = offsets if isinstance(offsets, tuple) else (offsets,)
        counts = counts if isinstance(counts, tuple) else (counts,)
        return max(o + c for o, c in zip(offsets, counts, strict=False)) <= size
    marker = {"PNG": b"IEND", "JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "GIF": b";"}.get(fmt or "")
    if marker is None:
        return False  # BMP and others: rare, just decode them
    position = f.tell()
    f.seek(max(0, size - 16))
    tail = f.read()
    f.seek(position)
    return marker in tail if fmt == "PNG" else tail.rstrip(b"\0").endswith(marker)


@dataclass
class ImageHeader:
    """What a scan learns about an image without decoding it."""

    size: tuple[int, int]  # (width, height) as stored
    orientation: int  # EXIF orientation, 1 = none
    animated: bool
    format: str

    @property
    def shown_size(self) -> tuple[int, int]:
        return oriented_size(self.size, self.orientation)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _probe_plain_png(path: str | Path) -> ImageHeader | None:
    """Fast path for the commonest case, a complete PNG without EXIF or frames.

    Reads IHDR (checksum verified), walks the chunk headers up to the first
    IDAT and checks that IEND ends the file: about 4x cheaper than
    ``Image.open``, which matters for 10,000-file folders. Returns None for
    anything unusual, and :func:`probe_image` then asks Pillow.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(33)
            if (head[:8] != _PNG_SIGNATURE or head[8:16] != b"\0\0\0\x0dIHDR"
                    or zlib.crc32(head[12:29]) != int.from_bytes(head[29:33], "big")):
                return None
            width, height = struct.unpack(">II", head[16:24])
            if width * height > MAX_PIXELS or not width or not height:
                return None  # Pillow's path gives the full message
            size = os.fstat(f.fileno()).st_size
            position = 33
            while True:
                f.seek(position)
                chunk = f.read(8)
                if len(chunk) < 8 or chunk[4:] in (b"eXIf", b"acTL", b"IEND"):
                    return None  # truncated, rotated, animated or empty: the careful path
                if chunk[4:] == b"IDAT":
                    break
                position += 12 + int.from_bytes(chunk[:4], "big")
            f.seek(max(0, size - 12))
            if f.read()[4:8] != b"IEND":
                return None
    except OSError:
        return None
    return ImageHeader((width, height), 1, False, "PNG")


def probe_image(path: str | Path) -> ImageHeader:
    """Header facts for pairing, without decoding: size, rotation, frames.

    A file whose end looks cut off is decoded once to be sure, so a truncated
    file is reported by the scan instead of failing later in training.
    """
    header = _probe_plain_png(path)
    if header is not None:
        return header
    with _open(path) as (im, f):
        header = ImageHeader(im.size, orientation(im), is_animated(im), im.format or "?")
        if not _tail_is_complete(im, f):
            im.load()
    return header


# --------------------------------------------------------------------------
# Pixels


def _pixels(im: Image.Image) -> np.ndarray:
    """Frame 0 decoded in its own dtype: (H, W) grey or (H, W, C) colour with C <= 4.

    16-bit and float data are kept as they are so that percentile scaling sees
    the real dynamic range instead of a clipped 8-bit copy.
    """
    mode = im.mode
    if mode in ("1", "L", "I", "F", "RGB", "RGBA", "LA"):
        return np.asarray(im)
    if mode.startswith("I;16"):  # 16-bit, possibly big-endian or signed: make it native
        arr = np.asarray(im)
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)
    if mode in ("P", "PA"):
        keep_alpha = mode == "PA" or "transparency" in im.info
        return np.asarray(im.convert("RGBA" if keep_alpha else "RGB"))
    if mode == "La":
        return np.asarray(im.convert("LA"))
    return np.asarray(im.convert("RGB"))  # CMYK, YCbCr, LAB, HSV, RGBX, RGBa


def _full_scale(dtype: np.dtype) -> float:
    """The value that means "white" for a dtype when no statistics are used."""
    if dtype == np.bool_:
        return 1.0
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


def _percentile_range(ch: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """(value at ``low`` %, value at ``high`` %) of one channel, robustly."""
    if ch.size > _SAMPLE:
        # A fixed-seed random sample is plenty for a 20,000^2 image, and unlike
        # a regular grid it cannot alias with stripes or tiles in the image.
        rng = np.random.default_rng(0)
        values = ch[rng.integers(0, ch.shape[0], _SAMPLE), rng.integers(0, ch.shape[1], _SAMPLE)]
    else:
        values = ch.ravel()
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


def _rescale(ch: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly to 0..255 (rounded, clipped) as uint8."""
    scale = 255.0 / (hi - lo)
    if ch.dtype in (np.uint8, np.uint16):  # a lookup table is exact and fast
        values = np.arange(np.iinfo(ch.dtype).max + 1, dtype=np.float64)
        lut = np.clip((values - lo) * scale + 0.5, 0, 255).astype(np.uint8)
        return np.take(lut, ch)
    out = np.empty(ch.shape, np.uint8)
    rows = max(1, _BLOCK // max(1, ch.shape[1]))
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
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * np.uint8(255)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4) or 0 in arr.shape[:2]:
        raise DataError(f"Unsupported image layout {arr.shape}: loragui reads grey, grey+alpha, "
                        "RGB or RGBA images. Save the image as one of those.")
    if arr.dtype.kind not in "uif":
        raise DataError(f"Unsupported pixel type {arr.dtype}. Save the image as 8- or 16-bit.")
    if arr.shape[2] in (2, 4):
        arr = arr[..., :-1]
    full = _full_scale(arr.dtype)
    if arr.shape[2] == 3 and (arr[..., 0] == arr[..., 1]).all() \
            and (arr[..., 1] == arr[..., 2]).all():
        arr = arr[..., :1]  # grey saved as RGB (common): scale one channel, not three
    if prep.channels == 1 and arr.shape[2] == 3:
        arr = _luma(arr)[..., None]
    if arr.shape[2] == prep.channels == 1:  # the common grey model: no interleaving copy
        return _rescale_channel(arr[..., 0], prep, full)[..., None]
    out = np.empty(arr.shape[:2] + (prep.channels,), np.uint8)
    for c in range(arr.shape[2]):
        scaled = _rescale_channel(arr[..., c], prep, full)
        # Grey is replicated to every output channel. (Channel-by-channel
        # assignment from a contiguous array is ~10x faster than broadcasting.)
        for target in range(c, prep.channels) if arr.shape[2] == 1 else (c,):
            out[..., target] = scaled
    return out


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (like Pillow's "L"), as float32, in row blocks to bound memory."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    out = np.empty(rgb.shape[:2], np.float32)
    rows = max(1, _BLOCK // rgb.shape[1])
    for r in range(0, rgb.shape[0], rows):
        out[r:r + rows] = rgb[r:r + rows].astype(np.float32) @ weights
    return out


def _rescale_channel(ch: np.ndarray, prep: Preprocessing, full: float) -> np.ndarray:
    """One channel -> (H, W) uint8 with the chosen method."""
    if prep.method == "none":
        return _rescale(ch, 0.0, full)
    lo, hi = _percentile_range(ch, prep.low, prep.high)
    if hi <= lo:  # a flat channel carries no contrast: fall back to the dtype range
        lo, hi = 0.0, full
    return _rescale(ch, lo, hi)


def read_image(path: str | Path, prep: Preprocessing, *, exif: bool = True) -> np.ndarray:
    """Decode, orient and normalise one image -> (H, W, prep.channels) uint8.

    ``exif=False`` keeps the pixels as stored (used when only the unrotated
    image matches its mask). Raises :class:`UnreadableFileError` (a DataError)
    naming the file and the reason.
    """
    with open_image(path) as im:
        value = orientation(im) if exif else 1
        arr = _pixels(im)
        return normalize_image(orient(arr, value), prep)


# --------------------------------------------------------------------------
# Masks


@dataclass
class MaskInfo:
    """A decoded mask plus what a scan reports about it."""

    mask: np.ndarray  # (H, W) bool foreground
    n_values: int  # distinct values (or colours) found
    lossy: bool  # JPEG: thresholded at half the maximum instead of "non-zero"
    animated: bool
    orientation: int


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
    """Non-zero (any channel) is foreground; for lossy files, above half the maximum."""
    if lossy:
        top = values.max(initial=0)
        fg = values > (top / 2) if top > 0 else np.zeros(values.shape, bool)
    else:
        fg = values != 0
    return fg.any(axis=2) if fg.ndim == 3 else fg


def _decode_mask(im: Image.Image) -> MaskInfo:
    arr = _pixels(im)
    value = orientation(im)
    arr = orient(arr, value)
    lossy = im.format in LOSSY_FORMATS
    colour, alpha = arr, None
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        colour, alpha = arr[..., :-1], arr[..., -1]
    # Alpha is ignored unless it is the only information: strokes painted on a
    # transparent layer have one colour everywhere and differ only in alpha.
    if alpha is not None and colour.min() == colour.max() and alpha.min() != alpha.max():
        colour = alpha
    return MaskInfo(_foreground(colour, lossy), _distinct(colour), lossy, is_animated(im), value)


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


# --------------------------------------------------------------------------
# Names


def name_key(stem: str) -> str:
    """How stems are compared: case-insensitive and with Unicode normalised, so
    ``Zelle.png`` made on a Mac (NFD) matches ``zelle_mask.png`` made elsewhere."""
    return unicodedata.normalize("NFC", stem).casefold()


def is_hidden(name: str) -> bool:
    """Dot files (``.DS_Store``, macOS ``._x.png`` shadows) and Windows clutter."""
    return name.startswith(".") or name.lower() in ("thumbs.db", "desktop.ini")


def link_problem(path: str | Path) -> str | None:
    """Why a symbolic link cannot be followed, or None when it can (or is no link)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return _reason(exc)
    return None
