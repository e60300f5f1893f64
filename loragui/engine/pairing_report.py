"""What a folder scan found: the pairs, and every problem grouped with what to do
about it (:class:`PairingReport`), in the words the command line and the window show."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .maskkinds import MaskSeen, Proposal, command_line_choice


def plural(n: int, word: str) -> str:
    """``1 pair``, ``2 pairs``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass
class Pair:
    """One image and its mask. ``shape`` and ``exif`` come from the scan; ``corrected``:
    the mask is from the corrections folder."""

    stem: str
    image: Path
    mask: Path
    shape: tuple[int, int] | None = None  # (height, width) as used, when known
    exif: bool = True  # apply the image's EXIF orientation (False: its mask fits it unrotated)
    corrected: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"stem": self.stem, "image": str(self.image), "mask": str(self.mask),
                "shape": list(self.shape) if self.shape else None, "exif": self.exif,
                "corrected": self.corrected}


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
    ("mask_kind", "What the masks hold", ""),
    ("not_binary", "Masks with more than two values",
     "Used with every non-zero value as foreground; save black (0) and white (255) masks if "
     "that is not what you meant."),
    ("empty_masks", "Masks without any foreground",
     "Used as background-only examples; check they are not blank by mistake."),
    ("full_masks", "Masks that are all foreground",
     "Used, but check they are not inverted (foreground must be non-zero, background 0)."),
    ("mostly_foreground", "Masks that are almost all foreground (over 95 %)",
     "Used as they are, but they may be inverted: foreground (the objects) must be non-zero "
     "and background 0; if the objects are black, train with --invert-masks (in the "
     "window: Invert masks)."),
    ("lossy_masks", "Masks stored as JPEG",
     "Read as foreground above a quarter of their brightest value, which keeps the objects of "
     "black-and-white masks but loses those of label images whose labels are near 0: save "
     "masks as PNG or TIFF."),
    ("ignored_files", "Ignored files and folders",
     "Only PNG, JPEG, TIFF, BMP and GIF files directly inside the folders are read."),
    ("notes", "Notes", ""),
]
# Masks trained as classes or objects hold ids: more than two values is what they are
# then (not a problem), the scan's question of what they hold is answered, and a mask
# cannot be inverted (its 0 is the background).
_ANSWERED_BY_IDS = ("mask_kind", "not_binary")
_ADVICE_FOR_IDS = {
    "full_masks": "Used, but they hold no background (0): check that 0 marks the background "
                  "in them.",
    "mostly_foreground": "Used as they are, but check that 0 marks the background in them "
                         "(masks of classes or objects are not inverted).",
}
# Masks of more than two values trained as foreground/background, by what they look like.
_FLATTENED = {
    "classes": "Trained as foreground/background (every non-zero value is foreground); their "
               "values look like classes: What the masks hold says how to train them as classes.",
    "objects": "Trained as foreground/background (every object is foreground); they look like "
               "object labels: What the masks hold says how to train them as objects.",
}


@dataclass
class PairingReport:
    """Everything a scan found. Names are file names; ``unreadable`` and
    ``ignored_files`` say which folder (``images/x.png``) since both can hold
    the same name; ``size_mismatch`` and ``duplicate_stems`` hold stems."""

    images_dir: Path
    masks_dir: Path  # the corrections folder when no masks folder was given
    pairs: list[Pair] = field(default_factory=list)
    corrections_dir: Path | None = None  # its masks replace those of masks_dir
    images_without_masks: list[str] = field(default_factory=list)
    masks_without_images: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    size_mismatch: list[str] = field(default_factory=list)
    not_binary: list[str] = field(default_factory=list)
    empty_masks: list[str] = field(default_factory=list)
    full_masks: list[str] = field(default_factory=list)
    mostly_foreground: list[str] = field(default_factory=list)
    lossy_masks: list[str] = field(default_factory=list)
    duplicate_stems: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # {"size_mismatch": {stem: "image 64×48, mask 32×32"}, "duplicate_stems": {...}}
    details: dict[str, dict[str, str]] = field(default_factory=dict)
    # The ids of every paired mask, and what they look like they hold (maskkinds).
    masks_seen: list[MaskSeen] = field(default_factory=list)
    proposal: Proposal = field(default_factory=lambda: Proposal("binary"))

    @property
    def ok(self) -> bool:
        return bool(self.pairs)

    def counts(self) -> dict[str, int]:
        """Images with a mask (``labelled``), of which from the corrections (``corrected``),
        and images with none (``unlabelled``)."""
        return {"labelled": len(self.pairs), "corrected": sum(p.corrected for p in self.pairs),
                "unlabelled": len(self.images_without_masks)}

    @property
    def mask_kind(self) -> list[str]:
        """The proposal's words as the command line says them ([] for binary): the
        group's entries in the JSON and the run record."""
        return self._entries("mask_kind")

    def _entries(self, attr: str, choose: Callable[[str], str] = command_line_choice
                 ) -> list[str]:
        """A group's entries as a person should read them (with reasons/details);
        ``choose``: how to say to train the masks as another kind."""
        if attr == "mask_kind":
            words = self.proposal.words(choose)
            return [words] if words else []
        if attr == "unreadable":
            return [f"{name}: {reason}" for name, reason in self.unreadable]
        detail = self.details.get(attr, {})
        return [f"{name} ({detail[name]})" if name in detail else name
                for name in getattr(self, attr)]

    def _groups(self, hold: str, choose: Callable[[str], str]
                ) -> list[tuple[str, str, list[str], str]]:
        """(attribute, title, entries, what to do) of every non-empty group, for masks
        trained as ``hold`` (auto and binary: foreground/background; classes; objects)."""
        ids = hold in ("classes", "objects")
        groups = []
        for attr, title, advice in _GROUPS:
            entries = self._entries(attr, choose)
            if not entries or ids and attr in _ANSWERED_BY_IDS:
                continue
            if ids:
                advice = _ADVICE_FOR_IDS.get(attr, advice)
            elif attr == "not_binary":
                advice = _FLATTENED.get(self.proposal.kind, advice)
            groups.append((attr, title, entries, advice))
        return groups

    def problem_groups(self, hold: str = "auto", choose: Callable[[str], str] = command_line_choice
                       ) -> list[tuple[str, list[str]]]:
        """(title with count, entries) for every non-empty group, for a GUI list; ``hold``:
        what the masks are trained as (masks of ids have fewer problems); ``choose``: how
        to say to train them as another kind (the command line's option by default)."""
        return [(f"{title} ({len(entries)})", entries)
                for _, title, entries, _ in self._groups(hold, choose)]

    def summary(self, max_names: int = 5, hold: str = "auto",
                choose: Callable[[str], str] = command_line_choice) -> str:
        """First line: the pair count. Then one line per problem kind: count,
        the first few names, and what to do, for masks trained as ``hold``
        (``choose``: as in :meth:`problem_groups`)."""
        if self.images_dir == self.masks_dir:
            where = f"{self.images_dir} (images and masks together)"
        else:
            where = f"{self.images_dir} and {self.masks_dir}"
        if self.corrections_dir is not None and self.corrections_dir != self.masks_dir:
            where += f", corrections in {self.corrections_dir}"
        n = len(self.pairs)
        lines = [f"{plural(n, 'pair') if n else 'No pairs'} found in {where}."]
        if self.corrections_dir is not None:
            c = self.counts()
            lines[0] += (f" {plural(c['labelled'], 'image')} labelled ({c['corrected']} "
                         f"corrected), {c['unlabelled']} unlabelled.")
        for attr, title, entries, advice in self._groups(hold, choose):
            if attr == "mask_kind":
                lines.append(f"{title}: {entries[0]}")
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
                               "corrections_dir": None if self.corrections_dir is None
                               else str(self.corrections_dir),
                               **self.counts(), "pairs": [p.to_dict() for p in self.pairs]}
        for attr, _, _ in _GROUPS:
            value = getattr(self, attr)
            out[attr] = [list(v) for v in value] if attr == "unreadable" else list(value)
        out["details"] = {k: dict(v) for k, v in self.details.items()}
        out["masks_hold"] = self.proposal.kind
        return out
