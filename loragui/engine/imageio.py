"""Reading the images users actually have, safely, into arrays.

Users' folders hold 8-bit PNGs next to 16-bit TIFFs from a microscope, float
TIFFs from an analysis script, CMYK JPEGs from a print shop, phone photos that
are stored sideways with an EXIF rotation flag, animated GIFs and, sometimes,
files that are truncated or hostile. Everything here turns a file into either
a decoded array or an :class:`UnreadableFileError` that says which file and why.

Two rules keep training and inference identical:

* :func:`read_image` sends every pixel through
  :func:`~loragui.engine.preprocessing.normalize_image` with the
  :class:`~loragui.engine.preprocessing.Preprocessing` stored in the model file, and
* EXIF orientation is applied the same way to images and masks (:func:`orient`).

Masks are interpreted in :mod:`loragui.engine.masks`. Only Pillow and numpy
are used; nothing here imports torch or Qt.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError
from .preprocessing import Preprocessing, normalize_image

# Largest image we agree to decode, checked against the size a file *declares*
# before any pixel is decoded. 20,000 x 20,000 (a whole-slide overview) still
# loads; a 100,000 x 100,000 "decompression bomb" is refused.
MAX_PIXELS = 400_000_000

# We do that check ourselves (with a message that names the file and its size),
# so Pillow's own must not get in first: it would refuse a legitimate 20,000^2
# slide, and between 89 and 179 megapixels it only warns.
Image.MAX_IMAGE_PIXELS = None

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


class UnreadableFileError(DataError):
    """One file cannot be used; ``reason`` is a short phrase for a report list."""

    def __init__(self, path: str | Path, reason: str,
                 advice: str = "Re-save it as PNG or TIFF, or remove it.") -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"Cannot read {self.path.name}: {reason}. {advice}")


# --------------------------------------------------------------------------
# Opening files safely


def failure_reason(exc: BaseException) -> str:
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
        raise UnreadableFileError(path, failure_reason(exc)) from exc


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


def decode_pixels(im: Image.Image) -> np.ndarray:
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


def read_image(path: str | Path, prep: Preprocessing, *, exif: bool = True) -> np.ndarray:
    """Decode, orient and normalise one image -> (H, W, prep.channels) uint8.

    ``exif=False`` keeps the pixels as stored (used when only the unrotated
    image matches its mask). Raises :class:`UnreadableFileError` (a DataError)
    naming the file and the reason.
    """
    with open_image(path) as im:
        value = orientation(im) if exif else 1
        arr = decode_pixels(im)
        im.close()  # the decoded copy is all that is needed: a 20000² RGB image is 1.2 GB
        return normalize_image(orient(arr, value), prep)


