"""The editing session of a folder: the masks as corrected so far, with one undo
history across every image (numpy only, no Qt).

Each change keeps the patches of its bounding box before and after (napari's
labels layer keeps indices and values the same way), not whole copies: a stroke
on a 2048x2048 mask costs the size of the stroke. The oldest changes are dropped
when the history holds more than ``max_history_bytes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import numpy as np

_ORIGINAL = 0  # the state of a stem no change has touched (or all its changes undone)


@dataclass
class Change:
    """One undoable change of one stem's mask: ``before`` and ``after`` of the
    box at (``y``, ``x``)."""

    id: int
    stem: str
    what: str  # "brush", "fill", ... (for a menu's "Undo brush")
    y: int
    x: int
    before: np.ndarray  # (h, w) bool
    after: np.ndarray  # (h, w) bool
    previous: int  # the stem's state before this change (a Change id or _ORIGINAL)

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.after.nbytes

    def box(self) -> tuple[slice, slice]:
        h, w = self.before.shape
        return slice(self.y, self.y + h), slice(self.x, self.x + w)


def changed_box(old: np.ndarray, new: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box of the pixels where ``old`` and ``new`` differ, or None."""
    diff = old != new
    rows = np.flatnonzero(diff.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(diff[rows[0]:rows[-1] + 1].any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


class EditSession:
    """The masks of one folder as edited in the review view.

    ``open`` gives the mask to show; ``apply`` records a change; ``undo`` and
    ``redo`` walk one history across all images and return the stem they
    changed; ``save`` writes the unsaved ones to a corrections folder.
    ``on_change`` listeners are called with the stem after apply, undo, redo
    and save.
    """

    def __init__(self, *, max_history_bytes: int = 512 * 1024 * 1024) -> None:
        self.on_change: list[Callable[[str], None]] = []
        self.max_history_bytes = max_history_bytes
        self._given: dict[str, np.ndarray] = {}  # the mask of each stem at its first open
        self._current: dict[str, np.ndarray] = {}  # stems changed this session: their mask now
        self._state: dict[str, int] = {}  # the id of the change a stem's mask is at
        self._saved: dict[str, int] = {}  # the state last saved
        self._differing: dict[str, int] = {}  # pixels where a stem's mask differs from its original
        self._undo: list[Change] = []
        self._redo: list[Change] = []
        self._history_bytes = 0
        self._ids = count(1)
        self.meaning = None  # a MaskMeaning of several classes: class maps (edits_classes)
        self._dtype: type = bool

    # -- masks

    def edits_classes(self, meaning) -> None:
        """Edit class maps of ``meaning``'s classes ((H, W) uint8 class indices, saved
        as the classes' ids) instead of foreground/background; before any mask is opened."""
        if self._given:
            raise RuntimeError("the kind of mask is chosen before any mask is opened")
        self.meaning, self._dtype = meaning, np.uint8

    def open(self, stem: str, mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
        """The current (H, W) bool mask of ``stem``: the edited one if it changed
        this session, else ``mask`` (None: an unlabelled image, which starts empty).
        The first open of a stem keeps its mask as the original."""
        if stem in self._current:
            return self._current[stem]
        if stem not in self._given:
            given = np.zeros(shape, self._dtype) if mask is None else \
                np.asarray(mask, dtype=self._dtype)
            if given.shape != tuple(shape):
                raise ValueError(f"the mask of {stem} is {given.shape[::-1]} pixels, its image "
                                 f"{tuple(shape)[::-1]}")
            self._given[stem] = given
        return self._given[stem]

    def current(self, stem: str) -> np.ndarray | None:
        """The mask of ``stem`` now, or None for a stem never opened."""
        return self._current.get(stem, self._given.get(stem))

    def original(self, stem: str) -> np.ndarray | None:
        return self._given.get(stem)

    def apply(self, stem: str, new_mask: np.ndarray, what: str, *,
              within: tuple[slice, slice] | None = None) -> None:
        """Make ``new_mask`` the mask of ``stem`` (opened before) as one undoable change.
        ``within``: a box outside which nothing changed (a brush stroke's), so that
        only it is compared."""
        old = self.current(stem)
        if old is None:
            raise KeyError(f"{stem} was not opened in this editing session")
        new_mask = np.asarray(new_mask, dtype=self._dtype)
        if new_mask.shape != old.shape:
            raise ValueError(f"the new mask of {stem} is {new_mask.shape}, its mask {old.shape}")
        if within is None:
            box = changed_box(old, new_mask)
        else:
            inner = changed_box(old[within], new_mask[within])
            box = None if inner is None else tuple(
                slice(w.start + i.start, w.start + i.stop) for w, i in zip(within, inner,
                                                                             strict=True))
        if box is None:
            return
        if stem not in self._current:
            self._current[stem] = old.copy()  # the original stays as given
        change = Change(next(self._ids), stem, what, box[0].start, box[1].start,
                        old[box].copy(), new_mask[box].copy(), self._state.get(stem, _ORIGINAL))
        self._current[stem][box] = change.after
        self._state[stem] = change.id
        self._undo.append(change)
        self._history_bytes += change.nbytes
        for dropped in self._redo:
            self._history_bytes -= dropped.nbytes
        self._redo.clear()
        self._trim()
        self._changed(change, forward=True)

    def _trim(self) -> None:
        while self._history_bytes > self.max_history_bytes and len(self._undo) > 1:
            self._history_bytes -= self._undo.pop(0).nbytes

    # -- history

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo_what(self) -> str | None:
        return self._undo[-1].what if self._undo else None

    def redo_what(self) -> str | None:
        return self._redo[-1].what if self._redo else None

    def undo(self) -> str | None:
        """Undo the last change (of any image); the stem it changed, or None."""
        if not self._undo:
            return None
        change = self._undo.pop()
        self._current[change.stem][change.box()] = change.before
        self._state[change.stem] = change.previous
        self._redo.append(change)
        self._changed(change, forward=False)
        return change.stem

    def redo(self) -> str | None:
        """Redo the last undone change; the stem it changed, or None."""
        if not self._redo:
            return None
        change = self._redo.pop()
        self._current[change.stem][change.box()] = change.after
        self._state[change.stem] = change.id
        self._undo.append(change)
        self._changed(change, forward=True)
        return change.stem

    # -- what is edited, saving

    def edited(self) -> set[str]:
        """Stems whose current mask differs from their original."""
        return {stem for stem, n in self._differing.items() if n}

    def unsaved(self) -> set[str]:
        """Stems whose mask changed since it was last saved (or since it was opened)."""
        return {s for s, state in self._state.items() if state != self._saved.get(s, _ORIGINAL)}

    def save(self, folder: Path, *, masks_dir: Path | None,
             images_dir: Path | None = None) -> list[Path]:
        """Write every unsaved mask to ``folder`` (engine/corrections.py: atomic PNGs,
        no user file replaced; ``images_dir`` where it may be the same folder) and
        return their paths. A failure raises the engine's
        :class:`~loragui.engine.errors.LoraGuiError` (the masks written before it
        count as saved)."""
        from loragui.engine.corrections import save_correction

        written = []
        for stem in sorted(self.unsaved()):
            written.append(save_correction(folder, stem, self._current[stem], masks_dir=masks_dir,
                                           images_dir=images_dir, meaning=self.meaning))
            self._saved[stem] = self._state[stem]
            self._notify(stem)
        return written

    def clear(self) -> None:
        """Forget every mask and the history (a new folder); the listeners stay."""
        listeners = self.on_change
        self.__init__(max_history_bytes=self.max_history_bytes)  # type: ignore[misc]
        self.on_change = listeners

    def _changed(self, change: Change, forward: bool) -> None:
        """Keep count of the pixels that differ from the original (within the change's
        box alone: no whole-image comparison per stroke), then tell the listeners."""
        original = self._given[change.stem][change.box()]
        was, now = (change.before, change.after) if forward else (change.after, change.before)
        self._differing[change.stem] = (self._differing.get(change.stem, 0)
                                        + int(np.count_nonzero(now != original))
                                        - int(np.count_nonzero(was != original)))
        self._notify(change.stem)

    def _notify(self, stem: str) -> None:
        for listener in list(self.on_change):
            listener(stem)
