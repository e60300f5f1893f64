"""The images a review shows, and the table model of the review's list.

:func:`list_items` reads the folders (in a worker thread: it pairs images with masks
through the engine's own pairing, so the list holds exactly the pairs training
would use); :class:`ItemTable` shows them with their split, Dice and "edited" mark,
and :class:`ItemFilter` sorts (worst Dice first by default) and filters by split.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt

TRAINING, VALIDATION, LABELLED, UNLABELLED = "training", "validation", "labelled", "unlabelled"
SPLITS = (TRAINING, VALIDATION, LABELLED, UNLABELLED)
COLUMNS = ("Image", "Split", "Dice", "Edited")
NAME, SPLIT, DICE, EDITED = range(len(COLUMNS))
SORT_ROLE = Qt.ItemDataRole.UserRole + 1


@dataclass
class ReviewItem:
    """One image of the review. ``mask`` is the mask it is compared with: its saved
    correction where there is one, else its original (None: unlabelled)."""

    stem: str
    image: Path
    mask: Path | None
    split: str
    exif: bool = True
    corrected: bool = False  # ``mask`` is a saved correction
    dice: float | None = None  # of the current prediction against the current mask
    edited: bool = False  # changed in this session


@dataclass
class Listing:
    items: list[ReviewItem]
    notes: list[str]  # what of the folders could not be shown, for the log


def list_items(images_dir: Path, masks_dir: Path | None, *, corrections_dir: Path | None = None,
               validation: Collection[str] | None = None) -> Listing:
    """Every usable image of ``images_dir``: paired with its mask (a saved correction in
    ``corrections_dir`` first), marked validation/training when the run's validation
    stems are known (else "labelled"), or "unlabelled" when it has no mask."""
    from loragui.engine.folders import list_images
    from loragui.engine.pairing import pair_folders

    images_dir = Path(images_dir)
    labelled = TRAINING if validation is not None else LABELLED
    valid = set(validation or ())
    items: list[ReviewItem] = []
    notes: list[str] = []
    if masks_dir is not None:
        report = pair_folders(images_dir, masks_dir)
        items = [ReviewItem(p.stem, p.image, p.mask, VALIDATION if p.stem in valid else labelled,
                            exif=p.exif) for p in report.pairs]
        unlabelled = [images_dir / name for name in report.images_without_masks]
        skipped = len(report.unreadable) + len(report.size_mismatch) + len(report.duplicate_stems)
        if skipped:
            notes.append(f"{skipped} image(s) are not shown: they cannot be used for training "
                         "(see the pairing report).")
    else:
        unlabelled = list_images(images_dir)
    items += [ReviewItem(p.stem, p, None, UNLABELLED) for p in unlabelled]
    if corrections_dir is not None and Path(corrections_dir).is_dir():
        for item in items:
            saved = Path(corrections_dir) / f"{item.stem}.png"
            if saved.is_file() and saved != item.mask:
                item.mask, item.corrected = saved, True
    return Listing(items, notes)


class ItemTable(QAbstractTableModel):
    """The review's images, one row each."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.items: list[ReviewItem] = []
        self._rows: dict[str, int] = {}

    def set_items(self, items: list[ReviewItem]) -> None:
        self.beginResetModel()
        self.items = list(items)
        self._rows = {item.stem: row for row, item in enumerate(self.items)}
        self.endResetModel()

    def item(self, stem: str) -> ReviewItem | None:
        row = self._rows.get(stem)
        return None if row is None else self.items[row]

    def changed(self, stem: str) -> None:
        """``stem``'s Dice or mark changed: its row is drawn (and sorted) again."""
        row = self._rows.get(stem)
        if row is not None:
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self.items)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        item, column = self.items[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == NAME:
                return item.image.name
            if column == SPLIT:
                return item.split
            if column == DICE:
                return "" if item.dice is None else f"{item.dice:.3f}"
            return "edited" if item.edited else ("corrected" if item.corrected else "")
        if role == SORT_ROLE:
            if column == DICE:  # no Dice (no mask, not predicted yet) after every score
                return (item.dice is None, item.dice or 0.0)
            if column == EDITED:
                return (not item.edited, not item.corrected)
            return item.image.name.casefold() if column == NAME else item.split
        if role == Qt.ItemDataRole.ToolTipRole:
            mask = item.mask.name if item.mask else "no mask yet"
            return f"{item.image}\nmask: {mask}{' (saved correction)' if item.corrected else ''}"
        if role == Qt.ItemDataRole.TextAlignmentRole and column == DICE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class ItemFilter(QSortFilterProxyModel):
    """Sorts by the table's sort keys; shows one split (None: all)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.split: str | None = None
        self.setSortRole(SORT_ROLE)

    def set_split(self, split: str | None) -> None:
        self.split = split
        self.beginFilterChange()
        self.endFilterChange()

    def filterAcceptsRow(self, row: int, parent) -> bool:
        return self.split is None or self.sourceModel().items[row].split == self.split

    def lessThan(self, left, right) -> bool:
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        return a < b
