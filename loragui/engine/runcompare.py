"""Runs side by side: their curves from metrics.csv and their settings in one table,
the differing ones marked. Torch-free, like the list of runs (:mod:`.runs`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from .runrecord import read_metrics
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


def read_curves(folder: str | os.PathLike) -> Curves:
    """The validation Dice and the losses by epoch; an unreadable or missing metrics.csv
    gives empty curves, and an unreadable cell None."""
    curves = Curves()
    try:
        rows = read_metrics(folder)
    except (OSError, ValueError, UnicodeDecodeError):
        return curves
    for r in rows:
        epoch = as_float(r.get("epoch"))
        if epoch is None:
            continue
        curves.epochs.append(epoch)
        curves.steps.append(as_int(r.get("step")))
        curves.dice.append(as_float(r.get("dice")))
        curves.train_loss.append(as_float(r.get("train_loss")))
        curves.val_loss.append(as_float(r.get("val_loss")))
    return curves
