"""Which files in a folder are images: the one rule that pairing, prediction
and the window share.

An image is a file directly inside the folder, not hidden (dot files, macOS
``._x.png`` shadows, Windows clutter), whose extension is one of
:data:`IMAGE_SUFFIXES`, compared case-insensitively. Subfolders are never
entered, so a symbolic-link loop cannot hang a listing. A link that cannot be
followed, or a name that is not a regular file (a FIFO would block
``Image.open`` forever), is listed with its problem so that a report can name it.

Nothing here imports torch or Qt.
"""

from __future__ import annotations

import errno
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError
from .imageio import failure_reason

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif"})

# Subfolder names of a dropped folder that hold the images and the masks, by preference.
_IMAGE_DIR_NAMES = ("images", "image", "imgs", "img", "raw", "inputs", "input")
_MASK_DIR_NAMES = ("masks", "mask", "labels", "label", "annotations", "annotation",
                   "ground_truth", "groundtruth", "gt", "segmentations", "segmentation", "seg",
                   "targets", "target")


# --------------------------------------------------------------------------
# Names


def name_key(stem: str) -> str:
    """How stems are compared: case-insensitive and with Unicode normalised, so
    ``Zelle.png`` made on a Mac (NFD) matches ``zelle_mask.png`` made elsewhere."""
    return unicodedata.normalize("NFC", stem).casefold()


def natural_key(text: str) -> list[Any]:
    """Sort "img2" before "img10", case-insensitively."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name_key(text))]


def is_hidden(name: str) -> bool:
    """Dot files (``.DS_Store``, macOS ``._x.png`` shadows) and Windows clutter."""
    return name.startswith(".") or name.lower() in ("thumbs.db", "desktop.ini")


def is_image_name(name: str) -> bool:
    """Whether a file of this name counts as an image (the folder rule, by name alone)."""
    return not is_hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def link_problem(path: str | Path) -> str | None:
    """Why a symbolic link cannot be followed, or None when it can (or is no link)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
        return failure_reason(exc)
    return None


# --------------------------------------------------------------------------
# Listing


@dataclass
class ImageFile:
    """An image file of a listing; ``problem`` is known from the listing alone."""

    path: Path
    problem: str | None = None  # broken link, not a regular file

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stem(self) -> str:
        return self.path.stem


def check_folder(path: str | Path | None, role: str) -> Path:
    """``path`` as an absolute folder, or a :class:`DataError` that says what is wrong."""
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


def list_folder(folder: Path, role: str) -> tuple[list[ImageFile], list[str]]:
    """The image files directly inside ``folder`` (by name) and the names of
    everything ignored (``images/notes.txt``, ``images/sub/``)."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except PermissionError:
        raise DataError(f"The {role} folder {folder} cannot be read (permission denied). Check "
                        "its access rights.") from None
    except OSError as exc:
        raise DataError(f"The {role} folder {folder} cannot be read ({exc}).") from None
    files: list[ImageFile] = []
    ignored: list[str] = []
    for entry in entries:
        name = entry.name
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir or not is_image_name(name):
            ignored.append(f"{folder.name}/{name}" + ("/" if is_dir else ""))
            continue
        problem = link_problem(entry.path) if entry.is_symlink() else None
        if problem is None:
            try:
                if not entry.is_file():
                    problem = "not a regular file"
            except OSError as exc:
                problem = str(exc)
        files.append(ImageFile(Path(entry.path), problem))
    return files, ignored


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


def no_images_error(folder: Path, role: str, ignored: list[str]) -> DataError:
    """The error for a folder without images, with a hint when the images are
    probably in its subfolders."""
    hint = ""
    split = find_image_mask_dirs(folder)
    if split is not None:
        hint = (f" It has {split[0].name}/ and {split[1].name}/ subfolders: choose those "
                "(or drop this folder as a whole).")
    elif any(name.endswith("/") for name in ignored):
        hint = " Only files directly inside it are read, not its subfolders."
    return DataError(f"The {role} folder {folder} holds no images (PNG, JPEG, TIFF, BMP, GIF)."
                     + hint)


def list_images(folder: str | Path | None, role: str = "images") -> list[Path]:
    """The usable image files directly inside ``folder``, naturally sorted.

    Files with a problem (a broken link, not a regular file) are left out.
    Raises :class:`DataError` when the folder is missing or holds no images.
    """
    folder = check_folder(folder, role)
    files, ignored = list_folder(folder, role)
    usable = [f.path for f in files if f.problem is None]
    if not usable:
        raise no_images_error(folder, role, ignored)
    return sorted(usable, key=lambda p: natural_key(p.name))
