"""Generators of test folders: one full of the mess real users have, one clean.

``make_messy_dataset`` writes an images/ and a masks/ folder holding every
awkward case loragui must survive (16-bit and float TIFFs, CMYK and rotated
JPEGs, truncated files, a decompression bomb, symlink loops, stray files …)
and returns what a scan must find. ``make_tiny_dataset`` writes a few bright
blobs on a dark background that a tiny UNet learns in a few dozen steps.

Other test modules (command line, window) import these; keep them fast.
"""

from __future__ import annotations

import os
import struct
import unicodedata
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 24, 16  # default picture size: small, and not square so rotations show


@dataclass
class MessyExpectations:
    """What ``pair_folders(images_dir, masks_dir)`` must report.

    File names are plain names, except ``unreadable`` and ``ignored_files``,
    which say the folder (``images/README.txt``) because both folders can hold
    the same name. ``size_mismatch`` and ``duplicate_stems`` hold stems.
    """

    images_dir: Path
    masks_dir: Path
    pairs: set[str] = field(default_factory=set)  # stems
    images_without_masks: set[str] = field(default_factory=set)
    masks_without_images: set[str] = field(default_factory=set)
    unreadable: dict[str, str] = field(default_factory=dict)  # name -> words the reason contains
    size_mismatch: set[str] = field(default_factory=set)
    not_binary: set[str] = field(default_factory=set)
    empty_masks: set[str] = field(default_factory=set)
    full_masks: set[str] = field(default_factory=set)
    lossy_masks: set[str] = field(default_factory=set)
    mostly_foreground: set[str] = field(default_factory=set)
    duplicate_stems: dict[str, str] = field(default_factory=dict)  # stem -> file name used
    ignored_files: set[str] = field(default_factory=set)
    notes_mention: set[str] = field(default_factory=set)  # file names some note must name
    unrotated: set[str] = field(default_factory=set)  # pair stems read without EXIF rotation
    foreground: dict[str, int] = field(default_factory=dict)  # stem -> foreground pixel count
    skipped: list[str] = field(default_factory=list)  # cases this platform cannot make


def picture(width: int = W, height: int = H, seed: int = 0) -> np.ndarray:
    """An (H, W) float picture in [0, 1]: a gradient, a bright disc and noise.

    It uses the whole range, so 8-bit, 16-bit and float copies normalise alike.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    disc = ((yy - height / 2) ** 2 + (xx - width / 3) ** 2) < (min(width, height) / 3) ** 2
    pic = 0.3 * xx / max(1, width - 1) + 0.6 * disc + 0.1 * rng.random((height, width))
    return (pic - pic.min()) / (pic.max() - pic.min())


def blob_mask(width: int = W, height: int = H) -> np.ndarray:
    """(H, W) bool: a rectangle in the middle."""
    mask = np.zeros((height, width), bool)
    mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = True
    return mask


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_declared_png(path: Path, width: int, height: int, rows: list[bytes] | None = None) -> None:
    """A grey 8-bit PNG with any declared size, streamed row by row.

    ``rows`` (each ``width`` bytes) repeat down the image; without it the file
    holds one compressed zero row only: a "decompression bomb" that declares a
    huge size but is a few hundred bytes.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(1)
    if rows is None:
        data = comp.compress(b"\0" * (width + 1)) + comp.flush()
    else:
        parts = []
        for y in range(height):
            parts.append(comp.compress(b"\0" + rows[y % len(rows)]))
        parts.append(comp.flush())
        data = b"".join(parts)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data)
                     + png_chunk(b"IEND", b""))


def write_big_png(path: Path, side: int = 20_000) -> None:
    """A ``side`` x ``side`` grey PNG that compresses to well under a megabyte:
    dark, with a bright band across the middle third of the columns."""
    dark = bytes(side)
    band = bytearray(side)
    band[side // 3: 2 * side // 3] = b"\xc8" * (2 * side // 3 - side // 3)
    rows = [dark] * 5 + [bytes(band)] * 5
    write_declared_png(path, side, side, rows)


def _save(arr: np.ndarray, path: Path, mode: str | None = None, **kw) -> None:
    im = Image.fromarray(arr)
    if mode:
        im = im.convert(mode)
    im.save(path, **kw)


def _grey8(seed: int = 0, width: int = W, height: int = H) -> np.ndarray:
    return (picture(width, height, seed) * 255).round().astype(np.uint8)


def _mask8(width: int = W, height: int = H) -> np.ndarray:
    return blob_mask(width, height).astype(np.uint8) * 255


def make_messy_dataset(root: Path) -> MessyExpectations:
    """Write ``root/images`` and ``root/masks`` with every messy case; say what to expect."""
    images, masks = Path(root) / "images", Path(root) / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    e = MessyExpectations(images.absolute(), masks.absolute())
    fg = int(blob_mask().sum())

    def pair(stem: str, image_name: str | None = None, mask_name: str | None = None,
             foreground: int | None = fg) -> None:
        """Write the default mask (unless written already) and expect a pair."""
        if mask_name is None:
            _save(_mask8(), masks / f"{stem}.png")
        e.pairs.add(stem)
        if foreground is not None:
            e.foreground[stem] = foreground

    # -- Ordinary pairs, and the image formats and modes people have ---------
    rgb = np.stack([_grey8(1), _grey8(2), _grey8(3)], axis=2)
    for i in range(1, 4):
        _save(rgb, images / f"plain_{i:02d}.png")
        pair(f"plain_{i:02d}")
    _save(_grey8(), images / "grey8.png")
    pair("grey8")
    _save((picture() * 65535).round().astype(np.uint16), images / "grey16.png")
    pair("grey16")
    _save((picture() * 65535).round().astype(np.uint16), images / "grey16tif.tif")
    pair("grey16tif")
    _save(picture().astype(np.float32), images / "float32.tif")
    pair("float32")
    _save(rgb, images / "cmyk.jpg", mode="CMYK", quality=95)
    pair("cmyk")
    _save(np.dstack([rgb, np.full((H, W), 128, np.uint8)]), images / "rgba.png")
    pair("rgba")
    _save(np.dstack([_grey8(), np.full((H, W), 200, np.uint8)]), images / "la.png", mode="LA")
    pair("la")
    _save(rgb, images / "palette.png", mode="P")
    pair("palette")
    _save(rgb, images / "bitmap.bmp")
    pair("bitmap")
    _save(_grey8(width=8, height=8), images / "tiny8.png")
    _save(_mask8(8, 8), masks / "tiny8.png")
    pair("tiny8", mask_name="tiny8.png", foreground=16)
    # A multi-page TIFF and an animated GIF: the first frame is used, with a note.
    pages = [Image.fromarray(_grey8(s)) for s in range(3)]
    pages[0].save(images / "multipage.tif", save_all=True, append_images=pages[1:])
    pair("multipage")
    e.notes_mention.add("multipage.tif")
    frames = [Image.fromarray(np.stack([_grey8(s)] * 3, axis=2)).convert("P") for s in range(3)]
    frames[0].save(images / "animated.gif", save_all=True, append_images=frames[1:], duration=100,
                   loop=0)
    pair("animated")
    e.notes_mention.add("animated.gif")
    # Phone photos stored sideways (W x H) with EXIF "rotate 90° clockwise" (6).
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(images / "exif_rotated.jpg", exif=exif, quality=95)
    _save(_mask8(H, W), masks / "exif_rotated.png")  # drawn on the upright (H x W) photo
    pair("exif_rotated", mask_name="exif_rotated.png", foreground=int(blob_mask(H, W).sum()))
    e.notes_mention.add("exif_rotated.jpg")
    Image.fromarray(rgb).save(images / "exif_stored.jpg", exif=exif, quality=95)
    pair("exif_stored")  # mask drawn on the pixels as stored: used unrotated
    e.notes_mention.add("exif_stored.jpg")
    e.unrotated.add("exif_stored")

    # -- Masks of every kind ------------------------------------------------
    _save(rgb, images / "mask01.png")
    _save(blob_mask().astype(np.uint8), masks / "mask01.png")  # values 0/1
    pair("mask01", mask_name="mask01.png")
    _save(rgb, images / "mask1bit.png")
    _save(blob_mask(), masks / "mask1bit.png")  # mode "1"
    pair("mask1bit", mask_name="mask1bit.png")
    _save(rgb, images / "maskpalette.png")
    pal = Image.fromarray(blob_mask().astype(np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(masks / "maskpalette.png")
    pair("maskpalette", mask_name="maskpalette.png")
    _save(rgb, images / "maskrgb.png")
    _save(np.stack([_mask8(), np.zeros((H, W), np.uint8), _mask8()], axis=2),
          masks / "maskrgb.png")
    pair("maskrgb", mask_name="maskrgb.png")
    _save(rgb, images / "maskrgba.png")  # colour carries the mask; alpha is just opaque
    _save(np.dstack([_mask8(), _mask8(), _mask8(), np.full((H, W), 255, np.uint8)]),
          masks / "maskrgba.png")
    pair("maskrgba", mask_name="maskrgba.png")
    _save(rgb, images / "maskalpha.png")  # black strokes on a transparent layer
    _save(np.dstack([np.zeros((H, W, 3), np.uint8), _mask8()]), masks / "maskalpha.png")
    pair("maskalpha", mask_name="maskalpha.png")
    _save(rgb, images / "maskla.png")
    _save(np.dstack([_mask8(), np.full((H, W), 255, np.uint8)]), masks / "maskla.png", mode="LA")
    pair("maskla", mask_name="maskla.png")
    _save(rgb, images / "labels.png")
    labels = np.zeros((H, W), np.uint8)
    labels[2:6, 2:6], labels[8:12, 2:6], labels[2:6, 10:20] = 1, 2, 3
    _save(labels, masks / "labels.png")
    pair("labels", mask_name="labels.png", foreground=16 + 16 + 40)
    e.not_binary.add("labels.png")
    _save(rgb, images / "labels16.png")
    _save(labels.astype(np.uint16) * 1000, masks / "labels16.png")
    pair("labels16", mask_name="labels16.png", foreground=16 + 16 + 40)
    e.not_binary.add("labels16.png")
    _save(rgb, images / "jpegmask.png")  # a JPEG mask: thresholded at a quarter, reported
    _save(_mask8(), masks / "jpegmask.jpg", quality=75)
    pair("jpegmask", mask_name="jpegmask.jpg", foreground=None)
    e.lossy_masks.add("jpegmask.jpg")
    _save(rgb, images / "empty.png")
    _save(np.zeros((H, W), np.uint8), masks / "empty.png")
    pair("empty", mask_name="empty.png", foreground=0)
    e.empty_masks.add("empty.png")
    _save(rgb, images / "full.png")
    _save(np.full((H, W), 255, np.uint8), masks / "full.png")
    pair("full", mask_name="full.png", foreground=H * W)
    e.full_masks.add("full.png")

    # -- Names -------------------------------------------------------------
    _save(rgb, images / "suffix_a.png")
    _save(_mask8(), masks / "suffix_a_mask.png")
    pair("suffix_a", mask_name="suffix_a_mask.png")
    _save(rgb, images / "Suffix_B.png")
    _save(_mask8(), masks / "suffix_b-MASK.tif")
    pair("Suffix_B", mask_name="suffix_b-MASK.tif")
    _save(rgb, images / "suffix_c.png")
    _save(_mask8(), masks / "suffix_c_gt.png")
    pair("suffix_c", mask_name="suffix_c_gt.png")
    _save(rgb, images / "cell7_img.png")
    _save(_mask8(), masks / "cell7_label.png")
    pair("cell7_img", mask_name="cell7_label.png")
    _save(rgb, images / "CaseName.PNG")
    _save(_mask8(), masks / "casename.png")
    pair("CaseName", mask_name="casename.png")
    _save(rgb, images / "cell ä 1.png")
    pair("cell ä 1")
    _save(rgb, images / "細胞.tif")
    pair("細胞")
    nfd = unicodedata.normalize("NFD", "Zelle_ö")  # as macOS writes it
    _save(rgb, images / f"{nfd}.png")
    _save(_mask8(), masks / (unicodedata.normalize("NFC", "Zelle_ö") + ".png"))
    pair(nfd, mask_name="Zelle_ö.png")
    # The same stem twice: the TIFF (the likely original) is used.
    _save(rgb, images / "dup.tif")
    _save(rgb, images / "dup.jpg")
    pair("dup")
    e.duplicate_stems["dup"] = "dup.tif"

    # -- Unpaired, mismatched ---------------------------------------------
    _save(rgb, images / "lonely.png")
    e.images_without_masks.add("lonely.png")
    _save(_mask8(), masks / "orphan.png")
    e.masks_without_images.add("orphan.png")
    _save(rgb, images / "mismatch.png")
    _save(_mask8(W - 4, H), masks / "mismatch.png")
    e.size_mismatch.add("mismatch")

    # -- Unreadable --------------------------------------------------------
    good_png = images / "plain_01.png"
    (images / "zero.png").write_bytes(b"")
    _save(_mask8(), masks / "zero.png")
    e.unreadable["images/zero.png"] = "empty"
    data = good_png.read_bytes()
    (images / "cut.png").write_bytes(data[: len(data) // 2])
    _save(_mask8(), masks / "cut.png")
    e.unreadable["images/cut.png"] = "truncated"
    _save(rgb, images / "cutjpeg.jpg", quality=95)
    data = (images / "cutjpeg.jpg").read_bytes()
    (images / "cutjpeg.jpg").write_bytes(data[: len(data) * 2 // 3])
    _save(_mask8(), masks / "cutjpeg.png")
    e.unreadable["images/cutjpeg.jpg"] = "truncated"
    _save(np.stack([_grey8()] * 3, axis=2), images / "cuttiff.tif")
    data = (images / "cuttiff.tif").read_bytes()
    (images / "cuttiff.tif").write_bytes(data[: len(data) // 2])
    _save(_mask8(), masks / "cuttiff.png")
    e.unreadable["images/cuttiff.tif"] = "truncated"  # or "damaged"; see the tests
    (images / "garbage.png").write_bytes(os.urandom(300))
    _save(_mask8(), masks / "garbage.png")
    e.unreadable["images/garbage.png"] = "not an image"
    write_declared_png(images / "bomb.png", 100_000, 100_000)
    _save(_mask8(), masks / "bomb.png")
    e.unreadable["images/bomb.png"] = "100000×100000"
    _save(rgb, images / "badmask.png")
    data = (masks / "plain_01.png").read_bytes()
    (masks / "badmask.png").write_bytes(data[: len(data) // 2])
    e.unreadable["masks/badmask.png"] = "truncated"

    # -- Clutter -----------------------------------------------------------
    (images / "README.txt").write_text("my images\n")
    (images / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (images / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (images / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (images / "._plain_01.png").write_bytes(b"\0\5\26\7AppleDouble")
    (masks / "notes.txt").write_text("masks by hand\n")
    (images / "subfolder").mkdir()
    _save(rgb, images / "subfolder" / "nested.png")
    e.ignored_files |= {"images/README.txt", "images/.DS_Store", "images/Thumbs.db",
                        "images/desktop.ini", "images/._plain_01.png", "masks/notes.txt",
                        "images/subfolder/"}
    # Links that cannot be followed, and a folder link back to the parent.
    try:
        os.symlink("loop.png", images / "loop.png")
        os.symlink("dangling_target_missing.png", images / "dangling.png")
        os.symlink(images, images / "parentlink", target_is_directory=True)
    except (OSError, NotImplementedError):
        e.skipped.append("symlinks")
    else:
        _save(_mask8(), masks / "loop.png")
        e.unreadable["images/loop.png"] = "loop"
        e.unreadable["images/dangling.png"] = "broken symbolic link"
        e.ignored_files.add("images/parentlink/")
    # A file nobody may read (only meaningful when not running as root).
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        _save(rgb, images / "locked.png")
        _save(_mask8(), masks / "locked.png")
        os.chmod(images / "locked.png", 0)
        e.unreadable["images/locked.png"] = "permission denied"
    else:
        e.skipped.append("permission denied (running as root)")
    return e


def make_tiny_dataset(root: Path, n: int = 6, size: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """``n`` grey RGB PNGs of bright blobs on a dark, noisy background, and their
    0/255 masks (blob = foreground): learnable by a tiny UNet in a few dozen steps."""
    rng = np.random.default_rng(seed)
    images, masks = Path(root) / "images", Path(root) / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        mask = np.zeros((size, size), bool)
        for _ in range(int(rng.integers(2, 5))):
            r = rng.uniform(size / 12, size / 6)
            cy, cx = rng.uniform(r, size - r, 2)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        pic = np.where(mask, rng.uniform(0.65, 0.9), rng.uniform(0.05, 0.2))
        pic = np.clip(pic + rng.normal(0, 0.04, (size, size)), 0, 1)
        grey = (pic * 255).round().astype(np.uint8)
        Image.fromarray(np.stack([grey] * 3, axis=2)).save(images / f"tiny_{i:02d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(masks / f"tiny_{i:02d}.png")
    return images, masks
