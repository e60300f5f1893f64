"""A run folder's layout and its record: ``run.json`` and ``metrics.csv``.

One run folder holds everything:

    OUT/adapter/          best adapter so far (PEFT layout)        [LoRA runs]
    OUT/model.safetensors best model so far                         [--full runs]
    OUT/checkpoint.pt     last epoch's state, to resume a killed run (see :mod:`.checkpoint`)
    OUT/metrics.csv       one row per epoch
    OUT/run.json          settings, final and best metrics, timings

The names live here, and ``run.json`` and ``metrics.csv`` are written and read here
only. Nothing here imports torch, so the window can read a run's record (and look
for its files) without loading it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

CHECKPOINT = "checkpoint.pt"
ADAPTER = "adapter"
MODEL_FILE = "model.safetensors"
METRICS = "metrics.csv"
RUN_JSON = "run.json"
# What a run folder holds; temporaries of these that a killed run left are removed at start.
RUN_FILES = (CHECKPOINT, ADAPTER, MODEL_FILE, METRICS, RUN_JSON)


def output_path(run_dir: str | os.PathLike, full: bool) -> Path:
    """Where a run writes its best result: the model file (``--full``) or the adapter folder."""
    return Path(run_dir) / (MODEL_FILE if full else ADAPTER)


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / CHECKPOINT).is_file()


def write_metrics(run_dir: str | os.PathLike, history: list[dict[str, Any]]) -> None:
    """``metrics.csv``: one row per trained epoch (epoch 0, the base model, is left out);
    None is written as an empty cell."""
    rows = [r for r in history if r["epoch"] > 0]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    atomic_write_text(Path(run_dir) / METRICS, buf.getvalue())


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a run's ``metrics.csv`` as written (strings; empty for None)."""
    with open(Path(run_dir) / METRICS, newline="") as f:
        return list(csv.DictReader(f))


def write_run_record(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / RUN_JSON, json.dumps(record, indent=2))


def read_run_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run's ``run.json``: settings, status, best and final epochs, timings."""
    return json.loads((Path(run_dir) / RUN_JSON).read_text())


QUALITY_WITHIN = 0.01  # Dice: "at its best level" for the time to quality


def time_to_quality(history: list[dict[str, Any]], best_dice: float | None,
                    within: float = QUALITY_WITHIN) -> dict[str, Any] | None:
    """When a run first reached its best Dice within ``within``: the first trained
    epoch's row (``elapsed`` seconds since the start) with a Dice that high; None
    without a best Dice."""
    if best_dice is None:
        return None
    for row in history:
        if row["epoch"] > 0 and row.get("dice") is not None and row["dice"] >= best_dice - within:
            return {"within": within, "seconds": row.get("elapsed"), "epoch": row["epoch"],
                    "step": row["step"], "dice": row["dice"]}
    return None
