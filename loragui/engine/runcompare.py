"""Runs side by side: their curves from metrics.csv and their settings in one table,
the differing ones marked. Torch-free, like the list of runs (:mod:`.runs`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from .class_metrics import class_column
from .maskkinds import MaskMeaning
from .runrecord import read_metrics, read_run_record
from .runs import DEFAULTS, RunRow, as_float, as_int


@dataclass
class SettingRow:
    """One setting across the compared runs."""

    name: str
    values: list[Any]
    differs: bool


def compare_settings(rows: list[RunRow]) -> list[SettingRow]:
    """Every setting of the runs side by side, then the device used and the pair count
    (None for a run without a readable record); ``differs`` marks the settings that are
    not the same in every run that has a record."""
    table = []
    for name, default in DEFAULTS.items():
        if name in ("out", "resume"):
            continue
        values = [None if r.config is None else r.config.get(name, default) for r in rows]
        table.append(SettingRow(name, values, _differ(values, rows)))
    for label, name in (("device used", "device"), ("pairs", "pairs")):
        values = [None if r.config is None else getattr(r, name) for r in rows]
        table.append(SettingRow(label, values, _differ(values, rows)))
    return table


def _differ(values: list[Any], rows: list[RunRow]) -> bool:
    known = [json.dumps(v, sort_keys=True) for v, r in zip(values, rows, strict=True)
             if r.config is not None]
    return len(set(known)) > 1


@dataclass
class Curves:
    """A run's curves from metrics.csv: one value per epoch (None where not measured)."""

    epochs: list[float] = field(default_factory=list)
    steps: list[int | None] = field(default_factory=list)
    dice: list[float | None] = field(default_factory=list)
    train_loss: list[float | None] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    # A run of several classes: each class's validation Dice by epoch (name -> values as
    # ``epochs``, background first) and the classes' colours ("#rrggbb", index = class);
    # empty for foreground/background, and for a run whose run.json does not name its
    # classes (an older loragui wrote it).
    classes: dict[str, list[float | None]] = field(default_factory=dict)
    colours: list[str] = field(default_factory=list)

    def best(self) -> tuple[int | None, float | None]:
        """The trained epoch with the highest Dice, and that Dice."""
        scored = [(d, e) for e, d in zip(self.epochs, self.dice, strict=True)
                  if e > 0 and d is not None]
        if not scored:
            return None, None
        dice, epoch = max(scored)
        return int(epoch), dice


def read_curves(folder: str | os.PathLike, *, base: bool = False) -> Curves:
    """The validation Dice and the losses by epoch, with each class's Dice for a run of
    several classes; ``base``: the base model's epoch 0 first, where run.json records it
    (metrics.csv starts at epoch 1). An unreadable or missing metrics.csv gives no
    trained epochs, and an unreadable cell None."""
    curves = Curves()
    record = _record(folder)
    meaning = _meaning(record)
    if meaning is not None:
        curves.classes = {name: [] for name in meaning.names}
        curves.colours = meaning.colours
    try:
        rows: list[dict[str, Any]] = list(read_metrics(folder))
    except (OSError, ValueError, UnicodeDecodeError):
        rows = []
    if base and not any(as_float(r.get("epoch")) == 0 for r in rows):
        first = _base_row(record)
        rows = rows if first is None else [first, *rows]
    for r in rows:
        epoch = as_float(r.get("epoch"))
        if epoch is None:
            continue
        curves.epochs.append(epoch)
        curves.steps.append(as_int(r.get("step")))
        curves.dice.append(as_float(r.get("dice")))
        curves.train_loss.append(as_float(r.get("train_loss")))
        curves.val_loss.append(as_float(r.get("val_loss")))
        for name, values in curves.classes.items():
            values.append(as_float(r.get(class_column(name))))
    return curves


def _record(folder: str | os.PathLike) -> dict[str, Any]:
    """The run's run.json; {} where it cannot be read (its curves then come from
    metrics.csv alone)."""
    try:
        record = read_run_record(folder)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _meaning(record: dict[str, Any]) -> MaskMeaning | None:
    """The classes of a run of several classes, as its run.json names them; None for
    foreground/background and for a record that does not name them."""
    try:
        meaning = MaskMeaning.from_dict(record.get("masks"))
    except ValueError:  # written by another version: plain curves then
        return None
    return meaning if meaning.k > 1 else None


def _base_row(record: dict[str, Any]) -> dict[str, Any] | None:
    """The base model's validation (epoch 0) as run.json records it: its row, or, in a
    record that an older loragui wrote, its Dice (and the validation loss where the
    run's last row is epoch 0's)."""
    row = record.get("base_validation")
    if isinstance(row, dict) and as_float(row.get("epoch")) == 0:
        return row
    if as_float(record.get("base_dice")) is None:
        return None
    final = record.get("final") if isinstance(record.get("final"), dict) else {}
    val_loss = final.get("val_loss") if final.get("epoch") == 0 else None
    return {"epoch": 0, "step": 0, "dice": record["base_dice"], "val_loss": val_loss}
