"""From two folders to training batches: pair, check, decode once, crop.

The path a user's data takes:

1. :func:`pair_folders` matches images to masks by name and checks every
   pair cheaply (image headers only, masks decoded because they are small),
   collecting every problem in a :class:`PairingReport` instead of stopping at
   the first one: a user with 300 images wants to hear about all 7 bad files
   at once.
2. :meth:`DecodedDataset.build` decodes each usable pair exactly once into
   normalised uint8 arrays that stay in memory for the whole run.
3. :class:`CropSampler` puts those arrays on the training device and cuts
   augmented random crops from them in batches, on the device.

Reading single files lives in :mod:`loragui.engine.imageio`; its public names
are re-exported here.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from .errors import DataError
from .imageio import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    ImageHeader,
    Preprocessing,
    UnreadableFileError,
    inspect_mask,
    is_hidden,
    link_problem,
    name_key,
    normalize_image,
    probe_image,
    read_image,
    read_mask,
)

__all__ = [
    "IMAGE_SUFFIXES", "MAX_PIXELS", "Preprocessing", "read_image", "normalize_image", "read_mask",
    "Pair", "PairingReport", "pair_folders", "find_image_mask_dirs", "list_images",
    "DecodedDataset", "split_indices", "CropSampler", "to_model_input",
]

Progress = Callable[[int, int], None]
T = TypeVar("T")
R = TypeVar("R")

# Endings that mark a mask ("cell1_mask.png" pairs with "cell1.png"), compared
# case-insensitively, and endings that mark an image ("cell1_img.png").
MASK_ENDINGS = tuple(sep + word for word in ("mask", "masks", "label", "labels", "seg", "gt")
                     for sep in ("_", "-", " ", "."))
IMAGE_ENDINGS = ("_img", "-img", "_image", "-image")

# When one name exists with several extensions, the likely original wins:
# TIFF (may hold 16-bit or float data), then the other lossless ones, JPEG last.
_FORMAT_RANK = {".tif": 0, ".tiff": 0, ".png": 1, ".bmp": 2, ".gif": 3, ".jpg": 4, ".jpeg": 4}

_IMAGE_DIR_NAMES = ("images", "image", "imgs", "img", "raw", "inputs", "input")
_MASK_DIR_NAMES = ("masks", "mask", "labels", "label", "annotations", "annotation",
                   "ground_truth", "groundtruth", "gt", "segmentations", "segmentation", "seg",
                   "targets", "target")

_WORKERS = max(1, min(4, os.cpu_count() or 1))
_TIMED_ITEMS = 8  # items timed on the calling thread before deciding on threads
_SLOW_ITEM_S = 0.003  # an item slower than this (large images) is worth a thread


# --------------------------------------------------------------------------
# Small helpers


def _natural_key(text: str) -> list[Any]:
    """Sort "img2" before "img10", case-insensitively."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name_key(text))]


def _strip_ending(key: str, endings: Sequence[str]) -> str | None:
    for ending in endings:
        if key.endswith(ending) and len(key) > len(ending):
            return key[: -len(ending)]
    return None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ordered_map(fn: Callable[[T], R], items: Sequence[T], *, stop: threading.Event | None,
                 stopped: str) -> Iterator[R]:
    """``map(fn, items)``, results in input order, on threads only when it pays.

    Pillow and zlib release the GIL while decoding, so threads speed up large
    images. For thousands of tiny files the work is Python overhead, and
    threads fighting over the GIL made a 10,000-pair scan 1.5-2x *slower* in
    our measurements. So the first few items run on this thread, timed, and the
    rest go to a pool only if the median item took longer than ``_SLOW_ITEM_S``.
    At most ``2 * workers`` items run ahead of the consumer, so a stop request,
    an error or a memory limit wastes little work.
    """
    def check() -> None:
        if stop is not None and stop.is_set():
            raise DataError(stopped)

    times = []
    for item in items[:_TIMED_ITEMS]:
        check()
        start = time.perf_counter()
        result = fn(item)
        times.append(time.perf_counter() - start)
        yield result
    rest = items[_TIMED_ITEMS:]
    slow = bool(times) and sorted(times)[len(times) // 2] > _SLOW_ITEM_S
    if not slow or _WORKERS == 1 or len(rest) < 2:
        for item in rest:
            check()
            yield fn(item)
        return
    source = iter(rest)
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="loragui-data") as pool:
        try:
            for item in itertools.islice(source, 2 * _WORKERS):
                pending.append(pool.submit(fn, item))
            while pending:
                check()
                result = pending.popleft().result()
                for item in itertools.islice(source, 1):
                    pending.append(pool.submit(fn, item))
                yield result
        finally:
            for future in pending:
                future.cancel()


# --------------------------------------------------------------------------
# Pairing


@dataclass
class Pair:
    """One image and its mask. ``shape`` and ``exif`` come from the scan."""

    stem: str
    image: Path
    mask: Path
    shape: tuple[int, int] | None = None  # (height, width) as used, when known
    exif: bool = True  # apply the image's EXIF orientation (False: its mask fits it unrotated)

    def to_dict(self) -> dict[str, Any]:
        return {"stem": self.stem, "image": str(self.image), "mask": str(self.mask),
                "shape": list(self.shape) if self.shape else None, "exif": self.exif}


# (attribute, title, what to do). Problems that lose data first, then warnings.
_GROUPS = [
    ("unreadable", "Unreadable files",
     "They are not used; re-save them (PNG or TIFF) or remove them."),
    ("size_mismatch", "Image and mask sizes differ",
     "These pairs are not used; a mask must have exactly its image's width and height."),
    ("images_without_masks", "Images without masks",
     "Not used; give each a mask with the same name (NAME.png or NAME_mask.png) in the masks "
     "folder, or move them away."),
    ("masks_without_images", "Masks without images",
     "Not used; check that their names match an image (case does not matter)."),
    ("duplicate_stems", "Same name with several extensions",
     "Only one file per name is used (shown); remove the other to silence this."),
    ("not_binary", "Masks with more than two values",
     "Used with every non-zero value as foreground; save black (0) and white (255) masks if "
     "that is not what you meant."),
    ("empty_masks", "Masks without any foreground",
     "Used as background-only examples; check they are not blank by mistake."),
    ("full_masks", "Masks that are all foreground",
     "Used, but check they are not inverted (foreground must be non-zero, background 0)."),
    ("ignored_files", "Ignored files and folders",
     "Only PNG, JPEG, TIFF, BMP and GIF files directly inside the folders are read."),
    ("notes", "Notes", ""),
]


@dataclass
class PairingReport:
    """Everything a scan found. Names are file names; ``unreadable`` and
    ``ignored_files`` say which folder (``images/x.png``) since both can hold
    the same name; ``size_mismatch`` and ``duplicate_stems`` hold stems."""

    images_dir: Path
    masks_dir: Path
    pairs: list[Pair] = field(default_factory=list)
    images_without_masks: list[str] = field(default_factory=list)
    masks_without_images: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    size_mismatch: list[str] = field(default_factory=list)
    not_binary: list[str] = field(default_factory=list)
    empty_masks: list[str] = field(default_factory=list)
    full_masks: list[str] = field(default_factory=list)
    duplicate_stems: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # {"size_mismatch": {stem: "image 64×48, mask 32×32"}, "duplicate_stems": {...}}
    details: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.pairs)

    def _entries(self, attr: str) -> list[str]:
        """A group's entries as a person should read them (with reasons/details)."""
        if attr == "unreadable":
            return [f"{name}: {reason}" for name, reason in self.unreadable]
        detail = self.details.get(attr, {})
        return [f"{name} ({detail[name]})" if name in detail else name
                for name in getattr(self, attr)]

    def problem_groups(self) -> list[tuple[str, list[str]]]:
        """(title with count, entries) for every non-empty group, for a GUI list."""
        groups = []
        for attr, title, _ in _GROUPS:
            entries = self._entries(attr)
            if entries:
                groups.append((f"{title} ({len(entries)})", entries))
        return groups

    def summary(self, max_names: int = 5) -> str:
        """First line: the pair count. Then one line per problem kind: count,
        the first few names, and what to do."""
        if self.images_dir == self.masks_dir:
            where = f"{self.images_dir} (images and masks together)"
        else:
            where = f"{self.images_dir} and {self.masks_dir}"
        n = len(self.pairs)
        lines = [f"{_plural(n, 'pair') if n else 'No pairs'} found in {where}."]
        for attr, title, advice in _GROUPS:
            entries = self._entries(attr)
            if not entries:
                continue
            sep = ", " if attr not in ("unreadable", "notes") and not self.details.get(attr) \
                else "; "
            shown = sep.join(entry.rstrip(".") for entry in entries[:max_names])
            if len(entries) > max_names:
                shown += f" … and {len(entries) - max_names} more"
            lines.append(f"{title} ({len(entries)}): {shown}." + (f" {advice}" if advice else ""))
        if not n:
            lines.append("To pair, an image and its mask need the same name (case does not matter; "
                         "cell1.png pairs with cell1.png, cell1_mask.png or cell1_label.tif) and "
                         "the same width and height.")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the command line's --json output and the run record)."""
        out: dict[str, Any] = {"images_dir": str(self.images_dir),
                               "masks_dir": str(self.masks_dir), "ok": self.ok,
                               "pairs": [p.to_dict() for p in self.pairs]}
        for attr, _, _ in _GROUPS:
            value = getattr(self, attr)
            out[attr] = [list(v) for v in value] if attr == "unreadable" else list(value)
        out["details"] = {k: dict(v) for k, v in self.details.items()}
        return out


@dataclass
class _File:
    path: Path
    problem: str | None = None  # known from the listing alone (broken link, not a file)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stem(self) -> str:
        return self.path.stem


@dataclass
class _Checked:
    """What checking one candidate pair found (computed on a worker thread)."""

    header: ImageHeader | None = None
    mask_shape: tuple[int, int] = (0, 0)  # (height, width)
    mask_values: int = 0
    mask_empty: bool = False
    mask_full: bool = False
    mask_lossy: bool = False
    mask_animated: bool = False
    image_problem: str | None = None
    mask_problem: str | None = None


def _check_pair(image: _File, mask: _File) -> _Checked:
    out = _Checked(image_problem=image.problem, mask_problem=mask.problem)
    if out.image_problem is None:
        try:
            out.header = probe_image(image.path)
        except UnreadableFileError as exc:
            out.image_problem = exc.reason
    if out.mask_problem is None:
        try:
            info = inspect_mask(mask.path)
        except UnreadableFileError as exc:
            out.mask_problem = exc.reason
        else:
            out.mask_shape = info.mask.shape  # type: ignore[assignment]
            out.mask_values = info.n_values
            out.mask_empty = not info.mask.any()
            out.mask_full = bool(info.mask.all())
            out.mask_lossy = info.lossy
            out.mask_animated = info.animated
    return out


def _check_folder(path: str | Path, role: str) -> Path:
    if path is None or str(path).strip() == "":
        raise DataError(f"No {role} folder was given. Choose the folder that holds the {role}.")
    folder = Path(path).expanduser()
    if not folder.exists():
        raise DataError(f"The {role} folder {folder} does not exist. Check the path, or choose "
                        "the folder again (it may have been moved or renamed).")
    if not folder.is_dir():
        raise DataError(f"{folder} is a file, not a folder. Choose the folder that holds the "
                        f"{role}.")
    return folder.absolute()


def _list_folder(folder: Path, role: str) -> tuple[list[_File], list[str]]:
    """Image files directly inside ``folder`` and the names of everything ignored.

    Subfolders are never entered, so a symbolic-link loop cannot hang a scan;
    a link that cannot be followed is kept as a file with a problem.
    """
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except PermissionError:
        raise DataError(f"The {role} folder {folder} cannot be read (permission denied). Check "
                        "its access rights.") from None
    except OSError as exc:
        raise DataError(f"The {role} folder {folder} cannot be read ({exc}).") from None
    files: list[_File] = []
    ignored: list[str] = []
    for entry in entries:
        name = entry.name
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_hidden(name) or is_dir or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
            ignored.append(f"{folder.name}/{name}" + ("/" if is_dir else ""))
            continue
        problem = link_problem(entry.path) if entry.is_symlink() else None
        if problem is None:
            try:
                if not entry.is_file():
                    problem = "not a regular file"  # a FIFO would block Image.open forever
            except OSError as exc:
                problem = str(exc)
        files.append(_File(Path(entry.path), problem))
    return files, ignored


def _no_images_error(folder: Path, role: str, ignored: list[str]) -> DataError:
    hint = ""
    split = find_image_mask_dirs(folder)
    if split is not None:
        hint = (f" It has {split[0].name}/ and {split[1].name}/ subfolders: choose those "
                "(or drop this folder as a whole).")
    elif any(name.endswith("/") for name in ignored):
        hint = " Only files directly inside it are read, not its subfolders."
    return DataError(f"The {role} folder {folder} holds no images (PNG, JPEG, TIFF, BMP, GIF)."
                     + hint)


def _pick(files: list[tuple[int, _File]]) -> tuple[_File, list[_File]]:
    """The file to use among same-named ones, and the others."""
    ranked = sorted(files, key=lambda rf: (rf[1].problem is not None, rf[0],
                                           _FORMAT_RANK.get(rf[1].path.suffix.lower(), 9),
                                           rf[1].name))
    return ranked[0][1], [f for _, f in ranked[1:]]


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a == b or os.path.samefile(a, b)
    except OSError:
        return False


def pair_folders(images_dir: str | Path, masks_dir: str | Path, *, progress: Progress | None = None,
                 stop: threading.Event | None = None) -> PairingReport:
    """Match images to masks by name and check every pair; see :class:`PairingReport`.

    Raises :class:`DataError` for a missing/unreadable folder, a folder without
    images, or one folder given for both with nothing telling images from masks.
    Having no *pairs* is not an error: ``report.ok`` is False and the report says why.
    """
    images_dir = _check_folder(images_dir, "images")
    masks_dir = _check_folder(masks_dir, "masks")
    notes: list[str] = []
    together = _same_folder(images_dir, masks_dir)
    if together:
        split = find_image_mask_dirs(images_dir)
        if split is not None:
            notes.append(f"{images_dir} was given as both folders; its {split[0].name}/ and "
                         f"{split[1].name}/ subfolders were used.")
            images_dir, masks_dir = split
            together = False
    image_files, ignored = _list_folder(images_dir, "images")
    if together:
        mask_files = [f for f in image_files if _strip_ending(name_key(f.stem), MASK_ENDINGS)]
        image_files = [f for f in image_files if f not in mask_files]
        masks_dir = images_dir
        if not mask_files or not image_files:
            raise DataError(
                f"The same folder ({images_dir}) was given for images and masks, and nothing "
                "tells them apart. Put the masks in their own folder, or name each mask like its "
                "image plus _mask (cell1.png and cell1_mask.png).")
    else:
        mask_files, ignored_masks = _list_folder(masks_dir, "masks")
        ignored += ignored_masks
    if not image_files:
        raise _no_images_error(images_dir, "images", ignored)
    if not mask_files:
        raise _no_images_error(masks_dir, "masks", ignored)

    report = PairingReport(images_dir, masks_dir, ignored_files=ignored, notes=notes)
    report.details = {"size_mismatch": {}, "duplicate_stems": {}}

    # Group images by name; a stem like "cell1_img" can also be found as "cell1".
    images_by_key: dict[str, list[tuple[int, _File]]] = {}
    for f in image_files:
        images_by_key.setdefault(name_key(f.stem), []).append((0, f))
    alias = {}
    for key in images_by_key:
        bare = _strip_ending(key, IMAGE_ENDINGS)
        if bare and bare not in images_by_key:
            alias.setdefault(bare, key)
    # Each mask goes to the image with its exact name, else the name without "_mask".
    masks_by_key: dict[str, list[tuple[int, _File]]] = {}
    for f in mask_files:
        key = name_key(f.stem)
        for rank, k in enumerate((key, _strip_ending(key, MASK_ENDINGS))):
            target = k if k in images_by_key else alias.get(k or "")
            if target:
                masks_by_key.setdefault(target, []).append((rank, f))
                break
        else:
            if f.problem:
                report.unreadable.append((f"{masks_dir.name}/{f.name}", f.problem))
            else:
                report.masks_without_images.append(f.name)

    candidates: list[tuple[_File, _File]] = []
    for key in sorted(images_by_key, key=_natural_key):
        image, other_images = _pick(images_by_key[key])
        mask, other_masks = _pick(masks_by_key[key]) if key in masks_by_key else (None, [])
        if other_images or other_masks:
            report.duplicate_stems.append(image.stem)
            report.details["duplicate_stems"][image.stem] = "; ".join(
                [f"used {f.name}, ignored " + ", ".join(o.name for o in others)
                 for f, others in ((image, other_images), (mask, other_masks)) if others])
        if mask is not None:
            candidates.append((image, mask))
        elif image.problem:
            report.unreadable.append((f"{images_dir.name}/{image.name}", image.problem))
        else:
            report.images_without_masks.append(image.name)

    for image, mask, result in _check_all(candidates, progress, stop):
        _merge(report, image, mask, result)
    report.images_without_masks.sort(key=_natural_key)
    report.masks_without_images.sort(key=_natural_key)
    report.unreadable.sort(key=lambda item: _natural_key(item[0]))
    report.details = {k: v for k, v in report.details.items() if v}
    return report


def _check_all(candidates: list[tuple[_File, _File]], progress: Progress | None,
               stop: threading.Event | None) -> Iterator[tuple[_File, _File, _Checked]]:
    """Check every candidate pair (image header, mask pixels), in order."""
    total = len(candidates)
    if progress is not None:
        progress(0, total)
    step = max(1, total // 100)  # at most ~100 progress calls: a GUI must not be flooded
    results = _ordered_map(lambda c: _check_pair(*c), candidates, stop=stop,
                           stopped="Scan stopped")
    for done, ((image, mask), result) in enumerate(zip(candidates, results, strict=True), 1):
        yield image, mask, result
        if progress is not None and (done % step == 0 or done == total):
            progress(done, total)


def _merge(report: PairingReport, image: _File, mask: _File, result: _Checked) -> None:
    """Fold one checked candidate into the report (on the calling thread, in order)."""
    if result.image_problem:
        report.unreadable.append((f"{report.images_dir.name}/{image.name}", result.image_problem))
    if result.mask_problem:
        report.unreadable.append((f"{report.masks_dir.name}/{mask.name}", result.mask_problem))
    if result.header is None or result.mask_problem:
        return
    header = result.header
    mask_size = (result.mask_shape[1], result.mask_shape[0])  # (width, height)
    use_exif = True
    if header.shown_size != mask_size:
        if header.orientation != 1 and header.size == mask_size:
            use_exif = False
            report.notes.append(f"{image.name}: its EXIF tag says to rotate it, but its mask "
                                "matches the image as stored, so it is used unrotated.")
        else:
            report.size_mismatch.append(image.stem)
            (w, h), (mw, mh) = header.shown_size, mask_size
            report.details["size_mismatch"][image.stem] = f"image {w}×{h}, mask {mw}×{mh}"
            return
    elif header.orientation != 1:
        report.notes.append(f"{image.name}: EXIF rotation applied (the camera stored it sideways "
                            "or mirrored).")
    if header.animated:
        report.notes.append(f"{image.name}: has several frames (animated or multi-page); the "
                            "first is used.")
    if result.mask_animated:
        report.notes.append(f"{mask.name}: has several frames; the first is used as the mask.")
    if result.mask_lossy:
        report.notes.append(f"{mask.name}: a JPEG mask, so its compression noise was ignored by "
                            "counting only pixels above half its maximum as foreground (save "
                            "masks as PNG).")
    elif result.mask_values > 2:
        report.not_binary.append(mask.name)
    if result.mask_empty:
        report.empty_masks.append(mask.name)
    elif result.mask_full:
        report.full_masks.append(mask.name)
    width, height = header.shown_size if use_exif else header.size
    report.pairs.append(Pair(image.stem, image.path, mask.path, (height, width), use_exif))


def find_image_mask_dirs(folder: str | Path) -> tuple[Path, Path] | None:
    """(images, masks) subfolders of a dropped folder (``images/`` + ``masks/``,
    ``img/`` + ``labels/`` …, case-insensitive), or None if it has no such pair."""
    folder = Path(folder)
    try:
        with os.scandir(folder) as it:
            subdirs = {}
            for entry in it:
                try:
                    if entry.is_dir():
                        subdirs.setdefault(entry.name.casefold(), Path(entry.path))
                except OSError:
                    continue
    except OSError:
        return None
    images = next((subdirs[n] for n in _IMAGE_DIR_NAMES if n in subdirs), None)
    masks = next((subdirs[n] for n in _MASK_DIR_NAMES if n in subdirs), None)
    return (images, masks) if images is not None and masks is not None else None


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder``, naturally sorted (for prediction).

    Raises :class:`DataError` when the folder is missing or holds no images.
    """
    folder = _check_folder(folder, "images")
    files, ignored = _list_folder(folder, "images")
    if not files:
        raise _no_images_error(folder, "images", ignored)
    return sorted((f.path for f in files), key=lambda p: _natural_key(p.name))


# --------------------------------------------------------------------------
# Decoded data


def _gigabytes(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


@dataclass
class DecodedDataset:
    """Every pair decoded exactly once; training reuses these arrays every step."""

    names: list[str]
    images: list[np.ndarray]  # (H, W, C) uint8, normalised
    masks: list[np.ndarray]  # (H, W) uint8 0/1

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def build(cls, pairs: Sequence[Pair], prep: Preprocessing, *, progress: Progress | None = None,
              stop: threading.Event | None = None, max_bytes: int | None = None) -> DecodedDataset:
        """Decode ``pairs``, in order (on a few threads when the images are large).

        Raises :class:`DataError` when a file that scanned fine no longer
        decodes (changed, moved, deleted), or when the arrays would need more
        than ``max_bytes`` -- checked up front from the scanned sizes, and again
        while decoding.
        """
        pairs = list(pairs)
        if not pairs:
            raise DataError("There are no image/mask pairs to load.")
        per_pixel = prep.channels + 1  # image channels + one mask byte

        def too_big(need: float) -> DataError:
            return DataError(
                f"The {_plural(len(pairs), 'image')} need about {_gigabytes(need)} of memory once "
                f"decoded, more than the {_gigabytes(max_bytes or 0)} allowed. Use fewer or "
                "smaller images (for example crops of the large ones).")

        if max_bytes is not None and all(p.shape for p in pairs):
            need = sum(p.shape[0] * p.shape[1] for p in pairs if p.shape) * per_pixel
            if need > max_bytes:
                raise too_big(need)
        names: list[str] = []
        images: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        used = 0
        step = max(1, len(pairs) // 100)  # at most ~100 progress calls
        loaded = _ordered_map(lambda p: _load_pair(p, prep), pairs, stop=stop,
                              stopped="Loading stopped")
        for i, (pair, (image, mask)) in enumerate(zip(pairs, loaded, strict=True)):
            used += image.nbytes + mask.nbytes
            if max_bytes is not None and used > max_bytes:
                raise too_big(used / (i + 1) * len(pairs))
            names.append(pair.stem)
            images.append(image)
            masks.append(mask)
            if progress is not None and ((i + 1) % step == 0 or i + 1 == len(pairs)):
                progress(i + 1, len(pairs))
        return cls(names, images, masks)

    def subset(self, indices: Iterable[int]) -> DecodedDataset:
        """The chosen items, sharing (not copying) their arrays."""
        idx = list(indices)
        return DecodedDataset([self.names[i] for i in idx], [self.images[i] for i in idx],
                              [self.masks[i] for i in idx])

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.images) + sum(m.nbytes for m in self.masks)

    def fingerprint(self) -> str:
        """sha256 over names, shapes and pixels: tells whether a resumed or
        compared run saw exactly the same training data."""
        h = hashlib.sha256()
        for name, image, mask in zip(self.names, self.images, self.masks, strict=True):
            h.update(name.encode("utf-8", "surrogateescape") + b"\0")
            h.update(repr((image.shape, mask.shape)).encode())
            h.update(np.ascontiguousarray(image))
            h.update(np.ascontiguousarray(mask))
        return h.hexdigest()


def _load_pair(pair: Pair, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    try:
        image = read_image(pair.image, prep, exif=pair.exif)
        mask, _ = read_mask(pair.mask)
    except UnreadableFileError as exc:
        folder = exc.path.parent
        if not folder.is_dir():
            raise DataError(f"The folder {folder} disappeared while loading ({exc.path.name} could "
                            "not be read). Was it moved, renamed or deleted, or a drive "
                            "unplugged? Put it back and start again.") from None
        raise DataError(f"Cannot load {exc.path.name}: {exc.reason}. If it was fine when the "
                        "folders were scanned, it has changed since (moved, deleted or still "
                        "being copied?); check it and scan again.") from None
    if image.shape[:2] != mask.shape:
        raise DataError(f"{pair.image.name} is {image.shape[1]}×{image.shape[0]} but its mask "
                        f"{pair.mask.name} is {mask.shape[1]}×{mask.shape[0]}: the files changed "
                        "since the folders were scanned. Scan them again.")
    return image, mask.view(np.uint8)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices, the same for the same arguments on any machine.

    Uses its own ``random.Random(seed)``, never the global generators. With
    ``val_fraction > 0`` there is at least one validation item (and at least
    one training item when n >= 2); a single pair serves as both.
    """
    if not (isinstance(val_fraction, (int, float)) and 0 <= val_fraction < 1):
        raise DataError(f"The validation fraction must be at least 0 and below 1, not "
                        f"{val_fraction!r}.")
    if n <= 0:
        return [], []
    if val_fraction == 0:
        return list(range(n)), []
    if n == 1:
        return [0], [0]
    n_val = min(n - 1, max(1, round(n * val_fraction)))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[n_val:]), sorted(order[:n_val])


# --------------------------------------------------------------------------
# Training crops


def _pad_to(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad an image smaller than the crop (and its mask, the same way) up to ``size``.

    Mirroring keeps the padding looking like the image; the mask is mirrored
    with it, because zero labels on mirrored cells would teach "cells here are
    background". When the image is too small to mirror once, both get zeros.
    """
    for axis in (0, 1):
        short = size - mask.shape[axis]
        if short <= 0:
            continue
        before, after = short // 2, short - short // 2
        mode = "reflect" if after < mask.shape[axis] else "constant"
        widths = [(0, 0)] * 3
        widths[axis] = (before, after)
        image = np.pad(image, widths, mode=mode)
        mask = np.pad(mask, widths[:2], mode=mode)
    return image, mask


def _dihedral(z: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Per-sample transpose / left-right / up-down flips of square crops:
    together the 8 rotations and mirrorings, applied to the whole batch at once."""
    for k, op in enumerate((lambda t: t.transpose(-1, -2), lambda t: t.flip(-1),
                            lambda t: t.flip(-2))):
        z = torch.where(flags[:, k].view(-1, 1, 1, 1), op(z), z)
    return z


def _jitter(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Mild per-sample contrast, brightness and gamma changes (r: (B, 3) uniform).

    Users' images differ in exposure from the base model's; this makes the
    adapter less sensitive to it. Results stay in [0, 1].
    """
    contrast = torch.exp((r[:, 0] * 2 - 1) * math.log(1.25)).view(-1, 1, 1, 1)
    brightness = ((r[:, 1] * 2 - 1) * 0.08).view(-1, 1, 1, 1)
    gamma = torch.exp((r[:, 2] * 2 - 1) * math.log(1.3)).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + brightness).clamp_(0, 1)
    return x.pow_(gamma)


class CropSampler:
    """Random training crops with augmentation, built in batches on the training device.

    Images are chosen with probability proportional to their area, so every
    pixel of the data set is equally likely to be trained on: a 1024² image
    holds 16 times the cells of a 256² one and should give 16 times the crops.
    Every call draws the same random numbers whatever the options, so a given
    seed gives the same crop positions with or without augmentation.
    """

    def __init__(self, data: DecodedDataset, crop_size: int, device: torch.device | str = "cpu",
                 *, augment: bool = True, seed: int = 0, intensity: bool = True) -> None:
        if len(data) == 0:
            raise DataError("There are no training images to sample crops from.")
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
            raise DataError(f"The crop size must be a positive whole number, not {crop_size!r}.")
        self.crop_size = crop_size
        self.device = torch.device(device)
        self.augment = augment
        self.intensity = intensity
        self.seed = seed
        self.channels = data.images[0].shape[2]
        # Image channels and the mask stacked: one slice and one transform per crop.
        self._stacks: list[torch.Tensor] = []
        areas = []
        for image, mask in zip(data.images, data.masks, strict=True):
            image, mask = _pad_to(image, mask, crop_size)
            stack = np.concatenate([image, mask[..., None].astype(np.uint8)], axis=2)
            self._stacks.append(torch.from_numpy(stack.transpose(2, 0, 1).copy()).to(self.device))
            areas.append(float(mask.shape[0] * mask.shape[1]))
        self._weights = torch.tensor(areas, dtype=torch.float64)
        self._generator = torch.Generator().manual_seed(seed)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, S, S) float32 in [0, 1]; y: (B, 1, S, S) float32 0/1; on the device."""
        g, size = self._generator, self.crop_size
        which = torch.multinomial(self._weights, batch_size, replacement=True, generator=g)
        where = torch.rand(batch_size, 2, generator=g, dtype=torch.float64)
        flips = torch.rand(batch_size, 3, generator=g) < 0.5
        tone = torch.rand(batch_size, 3, generator=g)
        crops = []
        for i, (fy, fx) in zip(which.tolist(), where.tolist(), strict=True):
            stack = self._stacks[i]
            y0 = int(fy * (stack.shape[1] - size + 1))
            x0 = int(fx * (stack.shape[2] - size + 1))
            crops.append(stack[:, y0:y0 + size, x0:x0 + size])
        z = torch.stack(crops)
        if self.augment:
            z = _dihedral(z, flips.to(self.device))
        x = z[:, :-1].float().div_(255)
        y = z[:, -1:].float()
        if self.augment and self.intensity:
            x = _jitter(x, tone.to(self.device))
        return x, y

    def state_dict(self) -> dict[str, Any]:
        """The random stream's position, so a resumed run draws the same crops."""
        return {"generator": self._generator.get_state(), "seed": self.seed}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        try:
            state = torch.as_tensor(d["generator"], dtype=torch.uint8).cpu()
            self._generator.set_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"The saved crop-sampler state is damaged ({exc}); start the run "
                            "again without resuming.") from None


def to_model_input(image_uint8: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 -> (1, C, H, W) float32 in [0, 1], the model's input layout."""
    arr = np.asarray(image_uint8)
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255)[None]
