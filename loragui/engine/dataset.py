"""The decoded dataset: every usable pair decoded exactly once, kept in memory.

:meth:`DecodedDataset.build` turns the pairs a scan found into normalised
uint8 arrays that training reuses every step, and :func:`split_indices` picks
the validation items. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import DataError
from .imageio import UnreadableFileError, read_image
from .maskkinds import MaskMeaning, read_target
from .masks import read_mask
from .pairing import Progress
from .pairing_report import Pair, plural
from .parallel import ordered_map
from .preprocessing import Preprocessing


def _gigabytes(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


@dataclass
class DecodedDataset:
    """Every pair decoded exactly once; training reuses these arrays every step."""

    names: list[str]
    images: list[np.ndarray]  # (H, W, C) uint8, normalised
    masks: list[np.ndarray]  # (H, W) uint8 0/1, or class indices (classes, objects)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def build(cls, pairs: Sequence[Pair], prep: Preprocessing, *, progress: Progress | None = None,
              stop: threading.Event | None = None, max_bytes: int | None = None,
              invert: bool = False, meaning: MaskMeaning | None = None) -> DecodedDataset:
        """Decode ``pairs``, in order (on a few threads when the images are large).

        Raises :class:`DataError` when a file that scanned fine no longer
        decodes (changed, moved, deleted), or when the arrays would need more
        than ``max_bytes`` -- checked up front from the scanned sizes, and again
        while decoding. ``invert``: every mask is used the other way round (for masks
        whose objects are 0). ``meaning``: masks of classes or objects become class
        indices (:meth:`MaskMeaning.target`); None or binary: foreground 0/1.
        """
        pairs = list(pairs)
        if not pairs:
            raise DataError("There are no image/mask pairs to load.")
        per_pixel = prep.channels + 1  # image channels + one mask byte

        def too_big(need: float) -> DataError:
            return DataError(
                f"The {plural(len(pairs), 'image')} need about {_gigabytes(need)} of memory once "
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
        loaded = ordered_map(lambda p: _load_pair(p, prep, invert, meaning), pairs, stop=stop,
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


def _load_pair(pair: Pair, prep: Preprocessing, invert: bool = False,
               meaning: MaskMeaning | None = None) -> tuple[np.ndarray, np.ndarray]:
    try:
        image = read_image(pair.image, prep, exif=pair.exif)
        if meaning is not None and meaning.hold != "binary":
            mask = read_target(pair.mask, meaning)
        else:
            mask, _ = read_mask(pair.mask)
        if invert:
            mask = ~mask
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


