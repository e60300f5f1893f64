"""A run folder's layout and its record: ``run.json`` and ``metrics.csv``.

One run folder holds everything:

    OUT/adapter/          best adapter so far (PEFT layout)        [LoRA runs]
    OUT/model.safetensors best model so far                         [--full runs]
    OUT/checkpoint.pt     last epoch's state, to resume a killed run (see :mod:`.checkpoint`)
    OUT/metrics.csv       one row per epoch
    OUT/run.json          settings, final and best metrics, timings; while the run
                          trains, its settings and the process training it
    OUT/previews/         validation previews of each epoch          [the window's runs]
    OUT/name.txt          the name a user gave the run                [optional]

The names live here, and ``run.json`` and ``metrics.csv`` are written and read here
only. Nothing here imports torch, so the window can read a run's record (and look
for its files) without loading it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from pathlib import Path
from typing import Any

from .. import __version__
from .atomic import atomic_write_text
from .formats import now_iso

CHECKPOINT = "checkpoint.pt"
ADAPTER = "adapter"
MODEL_FILE = "model.safetensors"
METRICS = "metrics.csv"
RUN_JSON = "run.json"
NAME_FILE = "name.txt"
PREVIEWS = "previews"  # each epoch's validation previews, for the window
# The layout of run.json: a reader refuses a record of a higher version (a newer loragui's).
# Records without the key are version 1.
RECORD_VERSION = 1
# What a run folder holds; temporaries of these that a killed run left are removed at start.
RUN_FILES = (CHECKPOINT, ADAPTER, MODEL_FILE, METRICS, RUN_JSON, NAME_FILE)


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
    record = {"record_version": RECORD_VERSION, **record}
    atomic_write_text(Path(run_dir) / RUN_JSON, json.dumps(record, indent=2))


def this_process() -> dict[str, Any]:
    """What a running run's record names, so that another process can tell whether it
    still trains: this process's id and the machine it runs on."""
    return {"pid": os.getpid(), "host": platform.node()}


def read_run_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run's ``run.json``: settings, status, best and final epochs, timings."""
    return json.loads((Path(run_dir) / RUN_JSON).read_text())


def validation_inputs(run_dir: str | os.PathLike) -> dict[str, Any]:
    """What re-scores a run's validation set: its folders, the stems it validated on and the
    model it wrote (``adapter`` for a LoRA run, ``base`` the model file of a ``--full`` one).

    Raises :class:`~.errors.DataError` with what to do when the run cannot tell.
    """
    from .errors import DataError

    run = Path(run_dir)
    if not (run / RUN_JSON).is_file():
        raise DataError(f"{run} is not a run folder (it holds no {RUN_JSON}): give the folder "
                        "that `loragui train --out` wrote")
    try:
        record = read_run_record(run)
    except (OSError, ValueError) as exc:
        raise DataError(f"{run / RUN_JSON} cannot be read ({exc}): evaluate with --images and "
                        "--masks instead") from None
    stems = record.get("validation")
    config = record.get("config") or {}
    if stems is None or not config.get("images") or not (config.get("masks")
                                                         or config.get("corrections")):
        raise DataError(f"{run / RUN_JSON} does not list the images the run validated on (an "
                        "older loragui wrote it): evaluate with --images and --masks instead")
    if not stems:
        raise DataError(f"the run in {run} held out no validation images (--val-fraction 0): "
                        "evaluate with --images and --masks instead")
    full = record.get("mode") == "full"
    output = output_path(run, full)
    if not output.exists():
        raise DataError(f"the run in {run} has not written its {output.name} yet: evaluate "
                        "once it has finished an epoch")
    # the masks as the run paired them: a corrected mask replaces its original
    return {"images": config["images"], "masks": config.get("masks") or None,
            "corrections": config.get("corrections"), "stems": list(stems),
            "base": str(output) if full else config.get("base"),
            "adapter": None if full else str(output)}


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


def run_record(*, config: dict[str, Any], full: bool, device: str, status: str,
               failed: str | None, stopped: bool, reason: str | None, early_stopped: bool,
               early_stop: dict[str, Any] | None, history: list[dict[str, Any]],
               steps: int, total_steps: int | None, epochs: int, steps_per_epoch: int,
               seconds: float, base_dice: float | None, best_epoch: int,
               best_dice: float | None, output: str | None, dataset: dict[str, Any],
               validation: list[str], pairing_problems: dict[str, Any],
               trainable_params: int, batch_size: int, lr_scale: float, backoffs: int,
               faults: list[str] | None, world_size: int,
               distributed: dict[str, Any] | None,
               init_adapter: dict[str, Any] | None = None,
               masks: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``run.json`` says of a run (``status``: running, failed, stopped or finished);
    ``distributed``: the backend, devices, lr_scaling, lr and peak_lr of several processes,
    None in one; ``init_adapter``: the adapter a warm start began from (--init-adapter);
    ``masks``: what the masks of a run of several classes hold (``MaskMeaning.to_dict()``),
    None for foreground/background."""
    best = next((r for r in history if r["epoch"] == best_epoch and r["epoch"] > 0), None)
    info: dict[str, Any] = {
        "loragui_version": __version__, "created": now_iso(), "config": config,
        "device": device, "mode": "full" if full else "lora", "status": status,
        "error": failed, "stopped": stopped, "reason": failed or reason,
        "early_stopped": early_stopped, "early_stop": early_stop,
        "steps": steps, "total_steps": total_steps,
        "epochs": epochs, "steps_per_epoch": steps_per_epoch,
        "seconds": seconds, "base_dice": base_dice,
        "best_epoch": best_epoch, "best": best, "final": history[-1] if history else None,
        # The base model's row (epoch 0), which metrics.csv leaves out: a past run's
        # curves start where they started live.
        "base_validation": next((r for r in history if r["epoch"] == 0), None),
        # When the best Dice was first reached within QUALITY_WITHIN (seconds since start).
        "time_to_quality": time_to_quality(history, best_dice),
        "output": output, "dataset": dataset,
        # the stems of the validation pairs: `loragui evaluate --run` scores exactly these
        "validation": validation, "pairing_problems": pairing_problems,
        "trainable_params": trainable_params,
        # What was changed to keep the run going (non-finite losses, out of memory).
        "batch_size_used": batch_size, "lr_scale": lr_scale,
        "backoffs": backoffs, "faults": faults,
        # Data parallel: processes, and the batch and peak learning rate they trained with.
        "world_size": world_size, "effective_batch_size": batch_size * world_size,
        # A warm start: the epoch-0 row (base_dice) is then this adapter's Dice.
        "init_adapter": init_adapter,
        # The classes' names and colours (index = class): metrics.csv's dice_NAME and
        # iou_NAME columns are theirs, and a past run's curves are drawn in their colours.
        "masks": masks,
    }
    if status == "running":
        info["process"] = this_process()
    if distributed is not None:
        info["distributed"] = {
            "world_size": world_size, "backend": distributed["backend"],
            "devices": list(distributed["devices"]), "batch_size_per_process": batch_size,
            "effective_batch_size": batch_size * world_size,
            "lr_scaling": distributed["lr_scaling"], "lr": distributed["lr"],
            "peak_lr": distributed["peak_lr"],
            "crops": "each process its own, seeded by (seed, rank, step, back-offs)",
            "sync": "all-reduce of the trainable parameters' gradients after each backward",
        }
    return info
