"""The masks being edited in a review session, with one undo history for all of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


class EditSession:
    """Current masks by stem; ``on_change`` callables get the stem after every change."""

    def __init__(self) -> None:
        self._masks: dict[str, np.ndarray] = {}
        self._opened: dict[str, np.ndarray] = {}
        self._saved: dict[str, np.ndarray] = {}
        self._history: list[tuple[str, np.ndarray, np.ndarray, str]] = []
        self._done = 0
        self.on_change: list[Callable[[str], None]] = []

    def open(self, stem: str, mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
        if stem not in self._masks:
            start = np.zeros(shape, bool) if mask is None else np.asarray(mask, bool).copy()
            self._masks[stem], self._opened[stem] = start, start.copy()
        return self._masks[stem]

    def current(self, stem: str) -> np.ndarray | None:
        return self._masks.get(stem)

    def apply(self, stem: str, new_mask: np.ndarray, what: str) -> None:
        before = self._masks[stem]
        after = np.asarray(new_mask, bool).copy()
        del self._history[self._done:]
        self._history.append((stem, before, after, what))
        self._done += 1
        self._masks[stem] = after
        self._changed(stem)

    def undo(self) -> str | None:
        if not self._done:
            return None
        self._done -= 1
        stem, before, _, what = self._history[self._done]
        self._masks[stem] = before.copy()
        self._changed(stem)
        return what

    def redo(self) -> str | None:
        if self._done == len(self._history):
            return None
        stem, _, after, what = self._history[self._done]
        self._done += 1
        self._masks[stem] = after.copy()
        self._changed(stem)
        return what

    def can_undo(self) -> bool:
        return self._done > 0

    def can_redo(self) -> bool:
        return self._done < len(self._history)

    def edited(self) -> set[str]:
        return {s for s, m in self._masks.items() if not np.array_equal(m, self._opened[s])}

    def unsaved(self) -> set[str]:
        return {s for s, m in self._masks.items()
                if not np.array_equal(m, self._saved.get(s, self._opened[s]))}

    def save(self, folder: Path, *, masks_dir: Path | None) -> list[Path]:
        from loragui.engine.corrections import save_corrected_mask

        written = []
        for stem in sorted(self.unsaved()):
            written.append(save_corrected_mask(Path(folder), stem, self._masks[stem]))
            self._saved[stem] = self._masks[stem].copy()
            self._changed(stem)
        return written

    def _changed(self, stem: str) -> None:
        for fn in list(self.on_change):
            fn(stem)
