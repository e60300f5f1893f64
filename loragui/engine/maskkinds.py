"""What the masks hold: foreground/background, class ids, or object labels.

The folder scan proposes a kind from the ids it saw in every mask
(:func:`propose`); the ``masks_hold`` setting confirms or overrides it
(:func:`resolve`). By default ("auto") a set proposed as classes or objects still
trains as foreground/background, as before, and the scan's report says what it saw
and which option trains it otherwise: the user confirms, nothing changes silently.

Classes are named and coloured by ``classes.json`` beside the masks, by the
``classes`` setting (``--classes background,nucleus,membrane``), or by default
("background", "class 1", ...; colours from :data:`PALETTE`). An *objects* set trains
three classes built from the instance labels: background, object interior, boundary.
Torch-free.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

HOLDS = ("binary", "classes", "objects")  # what a run trains; "auto" follows the scan (binary)
MAX_CLASSES = 16  # classes besides background; more distinct ids than that are object labels
CLASSES_FILE = "classes.json"
MAX_CLASSES_FILE_BYTES = 2**20
BACKGROUND = "#000000"
# Colours that stay apart on a dark preview and for common colour blindness (Okabe-Ito
# first), for classes 1, 2, ...
PALETTE = ("#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7",
           "#ffffff", "#999999", "#882255", "#44aa99", "#ddcc77", "#117733", "#aa4499",
           "#88ccee", "#661100")
OBJECT_CLASSES = (("background", BACKGROUND), ("object", "#56b4e9"), ("boundary", "#f0e442"))
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True)
class MaskSeen:
    """One mask's ids as the scan saw them (``ids``: None beyond 256 distinct ones)."""

    name: str
    n_values: int
    ids: tuple[int, ...] | None


def command_line_choice(kind: str) -> str:
    """How the command line says to train the masks as ``kind`` (classes or objects):
    its option, in the scan's report and the refusals. The window passes its own words
    (its Masks hold choice) where these take a ``choose``."""
    if kind == "classes":
        return (f"add --masks-hold classes (name them with --classes or a {CLASSES_FILE} "
                "beside the masks)")
    return f"add --masks-hold {kind}"


# What a run does by default with masks that look like classes or objects.
_UNLESS = {
    "classes": "They are used as foreground/background (every non-zero value) unless you "
               "train them as classes",
    "objects": "They are used as foreground/background (every object is foreground) unless "
               "you train them as objects (touching objects are then kept apart)",
}


@dataclass(frozen=True)
class Proposal:
    """What the masks look like they hold, and what the scan saw that says so."""

    kind: str  # "binary", "classes" or "objects"
    ids: tuple[int, ...] = ()  # every id seen (classes)
    most_ids: int = 0  # the most distinct ids in one mask
    seen: str = ""  # the report's question about the ids seen ("" for binary)

    def words(self, choose: Callable[[str], str] = command_line_choice) -> str:
        """The scan report's sentence ("" for binary): what the scan saw, what a run does
        with such masks by default, and how to train them as they look (``choose``: in
        the words of the command line or of the window)."""
        if self.kind == "binary":
            return ""
        return f"{self.seen} {_UNLESS[self.kind]}: {choose(self.kind)}."


def _ids_text(ids: Sequence[int]) -> str:
    return "{" + ", ".join(str(i) for i in ids) + "}"


def propose(seen: Sequence[MaskSeen]) -> Proposal:
    """Binary when every mask holds at most two values; classes for a small set of ids
    shared across files; objects for many ids per mask, or ids 0..n whose n varies
    between masks (instance labels of one class)."""
    multi = [m for m in seen if m.n_values > 2]
    if not multi:
        return Proposal("binary")
    most = max(m.n_values for m in multi)
    union = None if any(m.ids is None for m in seen) else \
        tuple(sorted(set().union(*(m.ids for m in seen))))
    varying = len(multi) >= 3 and all(m.ids == tuple(range(len(m.ids))) for m in multi) and \
        Counter(m.ids for m in multi).most_common(1)[0][1] < len(multi) / 2
    if union is not None and len(set(union) - {0}) <= MAX_CLASSES and not varying:
        k = len(set(union) - {0})
        return Proposal("classes", union, most, (
            f"values {_ids_text(union)} in the masks, more than two in {len(multi)} of "
            f"{len(seen)}: {k} classes besides background (0)?"))
    return Proposal("objects", union or (), most, (
        f"up to {most} distinct ids per mask, varying between masks: object labels of one "
        "class?"))


@dataclass(frozen=True)
class MaskClass:
    value: int  # the id in the masks
    name: str
    colour: str  # "#rrggbb"


@dataclass(frozen=True)
class MaskMeaning:
    """What a run's masks hold and the classes trained: class ``i`` is channel ``i`` of
    the model's head and index ``i`` of a predicted palette PNG."""

    hold: str = "binary"
    classes: tuple[MaskClass, ...] = ()

    @property
    def k(self) -> int:
        """Output channels of the model: 1 for binary (a sigmoid), else one per class."""
        return 1 if self.hold == "binary" else len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def colours(self) -> list[str]:
        return [c.colour for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        """The adapter config's ``masks`` section."""
        return {"hold": self.hold,
                "classes": [{"name": c.name, "colour": c.colour} for c in self.classes]}

    @classmethod
    def from_dict(cls, data: Any) -> MaskMeaning:
        """Read a ``masks`` section (absent: binary); ValueError saying what is wrong."""
        if data is None:
            return cls()
        if not isinstance(data, dict) or data.get("hold") not in HOLDS:
            raise ValueError("masks.hold must be one of " + ", ".join(HOLDS))
        if data["hold"] == "binary":
            return cls()
        entries = data.get("classes")
        if not isinstance(entries, list) or not 2 <= len(entries) <= MAX_CLASSES + 1:
            raise ValueError(f"masks.classes must list 2 to {MAX_CLASSES + 1} classes")
        classes = []
        for i, entry in enumerate(entries):
            if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                    and isinstance(entry.get("colour"), str)
                    and _COLOUR.fullmatch(entry["colour"])):
                raise ValueError(f"masks.classes[{i}] must have a name and a colour #rrggbb")
            classes.append(MaskClass(i, entry["name"], entry["colour"].lower()))
        return cls(data["hold"], tuple(classes))

    def target(self, ids: np.ndarray, name: str) -> np.ndarray:
        """The (H, W) uint8 class indices for a mask's ids (:func:`masks.read_mask_values`).

        Objects: 1 inside an object, 2 on its boundary. ``mode="inner"`` marks each
        object's own edge pixels, so two touching objects are parted by their two edges
        and the background around them stays background.
        """
        if self.hold == "objects":
            from skimage.segmentation import find_boundaries

            fg = ids > 0
            edge = find_boundaries(ids, mode="inner") & fg
            return fg.astype(np.uint8) + edge.astype(np.uint8)
        values = np.array([c.value for c in self.classes])
        order = np.argsort(values)
        pos = np.clip(np.searchsorted(values[order], ids), 0, len(values) - 1)
        known = values[order][pos] == ids
        if not known.all():
            bad = sorted({int(v) for v in np.unique(ids[~known])})
            raise DataError(f"{name} holds the value(s) {_ids_text(bad[:10])}, which no class "
                            f"has (the classes are {self._listing()}). Add them to "
                            f"{CLASSES_FILE} or --classes, or fix the mask.")
        return order[pos].astype(np.uint8)

    def _listing(self) -> str:
        return ", ".join(f"{c.value} {c.name}" for c in self.classes)


def _default(value: int, index: int) -> tuple[str, str]:
    if index == 0:
        return "background", BACKGROUND
    return f"class {value}", PALETTE[(index - 1) % len(PALETTE)]


def read_classes_file(path: Path) -> list[MaskClass]:
    """The classes of a ``classes.json``: ``{"classes": [{"id": 0, "name": "background",
    "colour": "#000000"}, ...]}`` (``colour`` optional). DataError saying what is wrong."""
    def bad(what: str) -> DataError:
        return DataError(f"{path}: {what}. Expected {{\"classes\": [{{\"id\": 0, \"name\": "
                         "\"background\", \"colour\": \"#000000\"}, ...]} with one entry per "
                         "value in the masks.")

    try:
        if path.stat().st_size > MAX_CLASSES_FILE_BYTES:
            raise bad("it is far larger than a list of classes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise bad(f"it cannot be read as JSON ({exc})") from None
    entries = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise bad("it has no list of classes")
    out: list[MaskClass] = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise bad(f"entry {i + 1} is not an object")
        value, name, colour = e.get("id"), e.get("name"), e.get("colour")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
            raise bad(f"entry {i + 1} has no whole-number id")
        if not isinstance(name, str) or not name.strip():
            raise bad(f"entry {i + 1} has no name")
        if colour is None:
            colour = _default(value, i)[1]
        elif not isinstance(colour, str) or not _COLOUR.fullmatch(colour):
            raise bad(f"entry {i + 1} ({name}) has the colour {colour!r}, not #rrggbb")
        out.append(MaskClass(value, name.strip(), colour.lower()))
    for what, key in (("id", lambda c: c.value), ("name", lambda c: c.name)):
        dup = [v for v, n in Counter(map(key, out)).items() if n > 1]
        if dup:
            raise bad(f"the {what} {dup[0]!r} appears twice")
    return sorted(out, key=lambda c: c.value)


def resolve(hold: str, names: Sequence[str], proposal: Proposal, seen: Sequence[MaskSeen],
            masks_dir: Path, *, invert: bool = False,
            choose: Callable[[str], str] = command_line_choice) -> MaskMeaning:
    """The meaning a run trains with: ``hold`` ("auto" or one of :data:`HOLDS`) and the
    class names given, against what the scan saw. Every contradiction is refused here,
    before any image is decoded: DataError saying what is wrong and what to do (another
    kind of masks in ``choose``'s words)."""
    if hold not in ("auto", *HOLDS):
        raise DataError(f"--masks-hold must be auto, {', '.join(HOLDS)}; not {hold!r}.")
    if hold == "auto":
        hold = "classes" if names else "binary"
    if names and hold != "classes":
        raise DataError(f"--classes names the classes of class masks, but the masks are "
                        f"trained as {hold}: add --masks-hold classes, or leave out --classes.")
    if hold != "binary" and invert:
        raise DataError(f"--invert-masks is for foreground/background masks; masks trained as "
                        f"{hold} hold ids (0 is background): leave out --invert-masks.")
    if hold == "binary":
        return MaskMeaning()
    if hold == "objects":
        return MaskMeaning("objects", tuple(MaskClass(i, n, c)
                                            for i, (n, c) in enumerate(OBJECT_CLASSES)))
    too_many = [m for m in seen if m.ids is None or len(set(m.ids) - {0}) > MAX_CLASSES]
    if too_many:
        m = too_many[0]
        raise DataError(f"{m.name} holds {m.n_values} distinct values: more than the "
                        f"{MAX_CLASSES} classes (besides background 0) a run trains. Are they "
                        f"object labels? To train them as objects, {choose('objects')}.")
    union = sorted({0}.union(*(m.ids for m in seen)))
    file = masks_dir / CLASSES_FILE
    if file.is_file():
        classes = read_classes_file(file)
        known = {c.value for c in classes}
        for m in seen:
            extra = sorted(set(m.ids) - known)
            if extra:
                raise DataError(f"{m.name} holds the value(s) {_ids_text(extra[:10])}, which "
                                f"{file} does not list. Add them to it, or fix the mask.")
        if 0 not in known:
            raise DataError(f"{file} lists no class with id 0: 0 is the background; add "
                            "{\"id\": 0, \"name\": \"background\"}.")
    else:
        classes = [MaskClass(v, *_default(v, i)) for i, v in enumerate(union)]
    if names:
        names = [n.strip() for n in names]
        if len(names) != len(classes):
            where = f"{file.name} lists" if file.is_file() else "the masks hold"
            raise DataError(f"--classes names {len(names)} classes ({', '.join(names)}) but "
                            f"{where} {len(classes)} values {_ids_text([c.value for c in classes])}:"
                            " name one class per value, background (0) first.")
        if len(set(names)) != len(names) or not all(names):
            raise DataError("--classes must name each class once, with a non-empty name.")
        classes = [MaskClass(c.value, n, c.colour) for c, n in zip(classes, names, strict=True)]
    if len(classes) < 2:
        raise DataError("the masks hold only background (0): there are no classes to train. "
                        "Check the masks, or train them as foreground/background.")
    if len(classes) > MAX_CLASSES + 1:
        raise DataError(f"{len(classes)} classes are more than the {MAX_CLASSES + 1} a run "
                        "trains.")
    return MaskMeaning("classes", tuple(classes))


def read_target(path: Path, meaning: MaskMeaning) -> np.ndarray:
    """A mask file as (H, W) uint8 class indices (see :meth:`MaskMeaning.target`)."""
    from .masks import read_mask_values

    return meaning.target(read_mask_values(path), path.name)


def meaning_of(k: int, *sections: Any) -> MaskMeaning:
    """The meaning a model with ``k`` output channels was trained with: the first
    ``masks`` section found among ``sections`` (an adapter's loragui section, a model
    file's metadata, a merged model's adapter record); a K-class model without one gets
    default class names. A section that does not fit ``k`` is passed over."""
    for section in sections:
        if not isinstance(section, dict):
            continue
        for data in (section.get("masks"), (section.get("adapter") or {}).get("masks")
                     if isinstance(section.get("adapter"), dict) else None):
            if data is None:
                continue
            try:
                meaning = MaskMeaning.from_dict(data)
            except ValueError:
                continue
            if meaning.k == k:
                return meaning
    if k == 1:
        return MaskMeaning()
    return MaskMeaning("classes", tuple(MaskClass(i, *_default(i, i)) for i in range(k)))


def palette_bytes(meaning: MaskMeaning, *, ids: bool = False) -> list[int]:
    """A PIL palette (768 values): index i in class i's colour, black beyond; ``ids``:
    index = each class's id in the masks (ids below 256), with id 0 black, so that any
    reader sees the background as background."""
    out = [0] * 768
    for i, c in enumerate(meaning.classes):
        at = c.value if ids else i
        if not (ids and at == 0):
            out[3 * at:3 * at + 3] = [int(c.colour[k:k + 2], 16) for k in (1, 3, 5)]
    return out
