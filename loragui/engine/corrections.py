"""Where corrected masks go, and how one is written without losing a user's file.

The review view saves each corrected (or newly drawn) mask as ``<stem>.png``
(8-bit, 0 = background, 255 = foreground) into a folder of corrections, which
training pairs with the images in preference to the original masks.

* The default folder is a new sibling of the masks folder (``<masks>-corrections``),
  or ``<images>-masks`` for an image folder without masks. A folder of that name
  that is not loragui's corrections folder is left alone: ``-2``, ``-3``... follow.
* A corrections folder is marked as loragui's (outputs.MARKER), so it is written
  again in later sessions; a folder holding anything else is refused.
* When the user picks the masks folder itself, each original mask of a changed
  image is first kept in :data:`ORIGINALS` inside it (hidden, so the folder rule
  never lists it as a mask), and only then replaced.

Every file is written atomically (atomic.py). Torch-free.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .errors import LoraGuiError
from .folders import is_image_name, name_key
from .maskkinds import palette_bytes
from .outputs import CORRECTIONS, Input, check_output, mark, read_marker
from .pairing import MASK_ENDINGS

# Inside a masks folder used as the corrections folder: the originals of replaced masks.
ORIGINALS = ".loragui-originals"
CORRECTIONS_SUFFIX = "-corrections"  # <masks>-corrections
NEW_MASKS_SUFFIX = "-masks"  # <images>-masks, for images without a masks folder


def _free_name(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``... : the first that is new or loragui's corrections."""
    candidate, n = base, 1
    while candidate.exists() and read_marker(candidate) != CORRECTIONS:
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def default_corrections_dir(masks_dir: Path | None, images_dir: Path) -> Path:
    """The folder the review view proposes for corrected masks: a sibling of the
    masks folder (or of the images folder when there is none) that is new or
    already loragui's corrections folder. Nothing is created."""
    source = Path(masks_dir) if masks_dir is not None else Path(images_dir)
    source = Path(os.path.abspath(source.expanduser()))
    suffix = CORRECTIONS_SUFFIX if masks_dir is not None else NEW_MASKS_SUFFIX
    return _free_name(source.with_name(source.name + suffix))


def correction_name(stem: str) -> str:
    return f"{stem}.png"


def _same_folder(a: Path, b: Path | None) -> bool:
    if b is None:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def masks_of(masks_dir: Path, stem: str, *, with_images: bool = False) -> list[Path]:
    """The mask files in ``masks_dir`` that pairing gives the image ``stem``
    (``stem.png``, ``stem_mask.tif``...), by the pairing rule's names.
    ``with_images``: the folder holds the images too, so only a name with a mask
    ending (``stem_mask.png``) is a mask; ``stem.png`` is the image itself."""
    key = name_key(stem)
    found = []
    try:
        entries = sorted(os.scandir(masks_dir), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if not is_image_name(entry.name):
            continue
        k = name_key(Path(entry.name).stem)
        if (k == key and not with_images) or any(k == key + e for e in MASK_ENDINGS):
            found.append(Path(entry.path))
    return found


def find_correction(folder: Path | None, stem: str) -> Path | None:
    """The corrected mask of the image ``stem`` in the corrections ``folder``
    (``<stem>.<ext>``, names compared as pairing compares them; PNG first), or None."""
    if folder is None:
        return None
    key = name_key(stem)
    try:
        found = [Path(e.path) for e in os.scandir(folder)
                 if is_image_name(e.name) and name_key(Path(e.name).stem) == key and e.is_file()]
    except OSError:
        return None
    return min(found, key=lambda p: (p.suffix.lower() != ".png", p.name)) if found else None


def _check_mask(stem: str, mask: np.ndarray, meaning=None) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise LoraGuiError(f"the corrected mask of {stem} is not a 2-D image (shape {mask.shape})")
    if stem != Path(stem).name or stem in ("", ".", "..") or not is_image_name(stem + ".png"):
        raise LoraGuiError(f"{stem!r} cannot name a mask file; rename the image")
    if meaning is not None:
        if mask.dtype == bool or mask.max(initial=0) >= len(meaning.classes):
            raise LoraGuiError(f"the corrected mask of {stem} holds no class indices of "
                               f"the {len(meaning.classes)} classes")
        return mask.astype(np.uint8)
    return mask.astype(bool)


def _write_png(path: Path, mask: np.ndarray, meaning=None) -> Path:
    """A foreground/background mask as 0/255 grey; class indices (``meaning``: the
    run's MaskMeaning) as each class's id in the masks, a palette PNG in the classes'
    colours (value 0 black, so that any reader sees the background as background),
    or 16-bit grey for ids beyond 255."""
    from PIL import Image

    if meaning is None:
        pixels = np.where(mask, np.uint8(255), np.uint8(0))
        return atomic_write(path, lambda tmp: Image.fromarray(pixels, mode="L").save(
            tmp, format="PNG"))
    values = np.array([c.value for c in meaning.classes], np.int64)
    ids = values[mask]
    if values.max() < 256:
        image = Image.fromarray(ids.astype(np.uint8), mode="P")
        image.putpalette(palette_bytes(meaning, ids=True))
    else:
        image = Image.fromarray(ids.astype(np.uint16))
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def _keep_original(path: Path) -> None:
    """Copy ``path`` into ORIGINALS beside it, unless an original of that name is kept
    already (the first original is the user's; later ones are loragui's own saves)."""
    kept = path.parent / ORIGINALS / path.name
    if kept.exists():
        return
    atomic_write(kept, lambda tmp: shutil.copy2(path, tmp))


def save_correction(folder: Path, stem: str, mask: np.ndarray, *,
                    masks_dir: Path | None, images_dir: Path | None = None,
                    meaning=None) -> Path:
    """Write the corrected mask of the image ``stem`` ((H, W) bool; or (H, W) class
    indices of ``meaning``, a MaskMeaning of several classes, written as the classes'
    ids, see :func:`_write_png`) into ``folder`` atomically and return its path.

    ``folder`` must be new, empty, or loragui's corrections folder; or the masks
    folder itself, where every original mask of ``stem`` is first kept in
    :data:`ORIGINALS` and then replaced by ``<name>.png`` (the others of that stem
    are moved there, so the image keeps a single mask; where the images share that
    folder, the mask is ``<stem>_mask.png`` and no image is touched). Raises :class:`LoraGuiError`
    (an :class:`~loragui.engine.outputs.OutputRefused` for a folder that is not
    loragui's) before anything is written."""
    mask = _check_mask(stem, mask, meaning)
    folder = Path(os.path.abspath(Path(folder).expanduser()))
    if _same_folder(folder, masks_dir):
        return _save_into_masks(folder, stem, mask, with_images=_same_folder(folder, images_dir),
                                meaning=meaning)
    inputs = [Input("the masks folder", masks_dir)] if masks_dir is not None else []
    if images_dir is not None:
        inputs.append(Input("the images folder", images_dir))
    check_output(folder, CORRECTIONS, inputs, overwrite=True, flag="the corrections folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LoraGuiError(f"could not create {folder}: {exc.strerror or exc}; choose another "
                           "corrections folder") from None
    mark(folder, CORRECTIONS)
    return _write_png(folder / correction_name(stem), mask, meaning)


def _save_into_masks(folder: Path, stem: str, mask: np.ndarray, *, with_images: bool,
                     meaning=None) -> Path:
    originals = masks_of(folder, stem, with_images=with_images)
    pngs = [p for p in originals if p.suffix.lower() == ".png"]
    target = pngs[0] if pngs else folder / (f"{stem}_mask.png" if with_images
                                            else correction_name(stem))
    for path in originals:
        _keep_original(path)
    path = _write_png(target, mask, meaning)
    for other in originals:  # kept in ORIGINALS: the image keeps one mask, the corrected one
        if other != target:
            other.unlink()
    return path
