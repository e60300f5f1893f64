"""Pairing: match images to masks by name and check every pair cheaply.

Images are read to their headers only; masks are decoded because they are
small. Every problem goes into a :class:`PairingReport` instead of stopping at
the first one: a user with 300 images wants to hear about all 7 bad files at
once. Which files count as images is :mod:`loragui.engine.folders`' rule.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .folders import (
    ImageFile,
    check_folder,
    find_image_mask_dirs,
    list_folder,
    name_key,
    natural_key,
    no_images_error,
)
from .imageio import ImageHeader, UnreadableFileError, probe_image
from .maskkinds import CLASSES_FILE, MaskSeen, propose
from .masks import MOSTLY_FOREGROUND, inspect_mask
from .pairing_report import Pair, PairingReport
from .parallel import ordered_map

Progress = Callable[[int, int], None]

# Endings that mark a mask ("cell1_mask.png" pairs with "cell1.png"), compared
# case-insensitively, and endings that mark an image ("cell1_img.png").
MASK_ENDINGS = tuple(sep + word for word in ("mask", "masks", "label", "labels", "seg", "gt")
                     for sep in ("_", "-", " ", "."))
IMAGE_ENDINGS = ("_img", "-img", "_image", "-image")

# When one name exists with several extensions, the likely original wins:
# TIFF (may hold 16-bit or float data), then the other lossless ones, JPEG last.
_FORMAT_RANK = {".tif": 0, ".tiff": 0, ".png": 1, ".bmp": 2, ".gif": 3, ".jpg": 4, ".jpeg": 4}


def _strip_ending(key: str, endings: Sequence[str]) -> str | None:
    for ending in endings:
        if key.endswith(ending) and len(key) > len(ending):
            return key[: -len(ending)]
    return None


@dataclass
class _Checked:
    """What checking one candidate pair found (computed on a worker thread)."""

    header: ImageHeader | None = None
    mask_shape: tuple[int, int] = (0, 0)  # (height, width)
    mask_values: int = 0
    mask_ids: tuple[int, ...] | None = None
    mask_empty: bool = False
    mask_full: bool = False
    mask_mostly_full: bool = False
    mask_lossy: bool = False
    mask_animated: bool = False
    image_problem: str | None = None
    mask_problem: str | None = None


def _check_pair(image: ImageFile, mask: ImageFile) -> _Checked:
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
            out.mask_ids = info.ids
            out.mask_empty = not info.mask.any()
            out.mask_full = bool(info.mask.all())
            out.mask_mostly_full = info.mask.mean() > MOSTLY_FOREGROUND
            out.mask_lossy = info.lossy
            out.mask_animated = info.animated
    return out


def _pick(files: list[tuple[int, ImageFile]]) -> tuple[ImageFile, list[ImageFile]]:
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


def pair_folders(images_dir: str | Path, masks_dir: str | Path | None, *,
                 corrections: str | Path | None = None, progress: Progress | None = None,
                 stop: threading.Event | None = None) -> PairingReport:
    """Match images to masks by name and check every pair; see :class:`PairingReport`.
    An image's mask in ``corrections`` (same name rule) replaces its mask in ``masks_dir``;
    either folder may be None, not both (a corrections folder that is the masks folder
    simply holds the masks).

    Raises :class:`DataError` for a missing/unreadable folder, a folder without
    images, or one folder given for both with nothing telling images from masks.
    Having no *pairs* is not an error: ``report.ok`` is False and the report says why.
    """
    if masks_dir is None and corrections is None:
        raise DataError("No masks folder was given. Choose the folder that holds the masks, or "
                        "a folder of corrected masks (--corrections).")
    images_dir = check_folder(images_dir, "images")
    fixed = None if corrections is None else check_folder(corrections, "corrections")
    only_fixed = masks_dir is None  # the corrected masks are the only masks
    masks_dir = fixed if masks_dir is None else check_folder(masks_dir, "masks")
    separate = fixed is not None and not only_fixed and not _same_folder(fixed, masks_dir)
    notes: list[str] = []
    together = _same_folder(images_dir, masks_dir)
    if together:
        split = find_image_mask_dirs(images_dir)
        if split is not None:
            notes.append(f"{images_dir} was given as both folders; its {split[0].name}/ and "
                         f"{split[1].name}/ subfolders were used.")
            images_dir, masks_dir = split
            together = False
    image_files, ignored = list_folder(images_dir, "images")
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
        mask_files, ignored_masks = list_folder(masks_dir, "corrections" if only_fixed else "masks")
        ignored += _not_classes_file(ignored_masks, masks_dir)
    fixed_files: list[ImageFile] = []
    if separate:
        fixed_files, ignored_fixed = list_folder(fixed, "corrections")
        ignored += _not_classes_file(ignored_fixed, fixed)
    if not image_files:
        raise no_images_error(images_dir, "images", ignored)
    if not mask_files and not fixed_files and fixed is None:
        raise no_images_error(masks_dir, "masks", ignored)

    report = PairingReport(images_dir, masks_dir, corrections_dir=fixed, ignored_files=ignored,
                           notes=notes)
    report.details = {"size_mismatch": {}, "duplicate_stems": {}}

    # Group images by name; a stem like "cell1_img" can also be found as "cell1".
    images_by_key: dict[str, list[tuple[int, ImageFile]]] = {}
    for f in image_files:
        images_by_key.setdefault(name_key(f.stem), []).append((0, f))
    alias = {}
    for key in images_by_key:
        bare = _strip_ending(key, IMAGE_ENDINGS)
        if bare and bare not in images_by_key:
            alias.setdefault(bare, key)

    def by_image(files: list[ImageFile], folder: Path, prefix: str) -> dict[str, list]:
        """Each mask goes to the image with its exact name, else the name without "_mask"."""
        found: dict[str, list[tuple[int, ImageFile]]] = {}
        for f in files:
            key = name_key(f.stem)
            for rank, k in enumerate((key, _strip_ending(key, MASK_ENDINGS))):
                target = k if k in images_by_key else alias.get(k or "")
                if target:
                    found.setdefault(target, []).append((rank, f))
                    break
            else:
                if f.problem:
                    report.unreadable.append((f"{folder.name}/{f.name}", f.problem))
                else:
                    report.masks_without_images.append(prefix + f.name)
        return found

    masks_by_key = by_image(mask_files, masks_dir, "")
    fixed_by_key = by_image(fixed_files, fixed, f"{fixed.name}/") if separate else {}

    candidates: list[tuple[ImageFile, ImageFile, bool]] = []
    for key in sorted(images_by_key, key=natural_key):
        image, other_images = _pick(images_by_key[key])
        source = fixed_by_key if key in fixed_by_key else masks_by_key
        mask, other_masks = _pick(source[key]) if key in source else (None, [])
        if other_images or other_masks:
            report.duplicate_stems.append(image.stem)
            report.details["duplicate_stems"][image.stem] = "; ".join(
                [f"used {f.name}, ignored " + ", ".join(o.name for o in others)
                 for f, others in ((image, other_images), (mask, other_masks)) if others])
        if mask is not None:
            candidates.append((image, mask, only_fixed or source is fixed_by_key))
        elif image.problem:
            report.unreadable.append((f"{images_dir.name}/{image.name}", image.problem))
        else:
            report.images_without_masks.append(image.name)

    for image, mask, corrected, result in _check_all(candidates, progress, stop):
        _merge(report, image, mask, result, corrected)
    report.images_without_masks.sort(key=natural_key)
    report.masks_without_images.sort(key=natural_key)
    report.unreadable.sort(key=lambda item: natural_key(item[0]))
    report.details = {k: v for k, v in report.details.items() if v}
    report.proposal = propose(report.masks_seen)
    return report


def _check_all(candidates: list[tuple[ImageFile, ImageFile, bool]], progress: Progress | None,
               stop: threading.Event | None
               ) -> Iterator[tuple[ImageFile, ImageFile, bool, _Checked]]:
    """Check every candidate pair (image header, mask pixels), in order."""
    total = len(candidates)
    if progress is not None:
        progress(0, total)
    step = max(1, total // 100)  # at most ~100 progress calls: a GUI must not be flooded
    results = ordered_map(lambda c: _check_pair(c[0], c[1]), candidates, stop=stop,
                           stopped="Scan stopped")
    for done, ((image, mask, corrected), result) in enumerate(
            zip(candidates, results, strict=True), 1):
        yield image, mask, corrected, result
        if progress is not None and (done % step == 0 or done == total):
            progress(done, total)


def _merge(report: PairingReport, image: ImageFile, mask: ImageFile, result: _Checked,
           corrected: bool) -> None:
    """Fold one checked candidate into the report (on the calling thread, in order)."""
    if result.image_problem:
        report.unreadable.append((f"{report.images_dir.name}/{image.name}", result.image_problem))
    if result.mask_problem:
        report.unreadable.append((f"{mask.path.parent.name}/{mask.name}", result.mask_problem))
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
        report.lossy_masks.append(mask.name)
    elif result.mask_values > 2:
        report.not_binary.append(mask.name)
    if result.mask_empty:
        report.empty_masks.append(mask.name)
    elif result.mask_full:
        report.full_masks.append(mask.name)
    elif result.mask_mostly_full:
        report.mostly_foreground.append(mask.name)
    width, height = header.shown_size if use_exif else header.size
    report.pairs.append(Pair(image.stem, image.path, mask.path, (height, width), use_exif,
                             corrected))
    if not result.mask_lossy:  # a JPEG's noise is no ids: it is read as foreground only
        report.masks_seen.append(MaskSeen(mask.name, result.mask_values, result.mask_ids))


def _not_classes_file(ignored: list[str], folder: Path) -> list[str]:
    """The ignored names of a masks folder but its classes.json, which names the classes
    and is read, not ignored."""
    return [name for name in ignored if name != f"{folder.name}/{CLASSES_FILE}"]
