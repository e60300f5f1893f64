"""The history of runs: one row per run folder, read from its ``run.json`` alone.

A row says what a user needs to find a run again (name, date, data, base model,
the settings that differ from the defaults, device, duration, status, the base
model's validation Dice and the adapter's best) and what is wrong with it, if
anything: a damaged or half-written ``run.json``, a record of a newer loragui, a
missing adapter. Listing never raises for what it finds in a folder, never
imports torch and never loads a model, so that 500 runs list in a blink.

A run is *running* while the process its record names (``process``: pid and
host, written when training starts) is alive; a record that says running but
whose process has ended is a run that was killed.

Comparing runs (curves and settings side by side) is :mod:`.runcompare`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .config import TRAIN_OPTIONS, TrainConfig
from .errors import LoraGuiError
from .runrecord import (
    ADAPTER,
    CHECKPOINT,
    METRICS,
    MODEL_FILE,
    NAME_FILE,
    PREVIEWS,
    RECORD_VERSION,
    RUN_FILES,
    RUN_JSON,
    output_path,
    read_metrics,
    read_run_record,
)

# "damaged": run.json unreadable or missing; "newer": a record a newer loragui wrote.
STATUSES = ("running", "finished", "stopped", "failed", "resumable", "damaged", "newer")
# Folder names that say nothing about a data set: its name is then the parent's.
GENERIC_NAMES = frozenset({"images", "image", "imgs", "img", "masks", "mask", "labels", "train",
                           "input", "inputs"})
# TrainConfig's defaults by field, as declared (made once: a row compares its settings).
DEFAULTS: dict[str, Any] = {option.name: option.default for option in TRAIN_OPTIONS}
# Fields shown in a row's columns of their own, or that say where and how, not what.
_NOT_SETTINGS = ("images", "masks", "out", "base", "resume")


def dataset_name(folder: str | os.PathLike) -> str:
    """A name for the data set in ``folder``: its name, or its parent's for a generic name."""
    path = Path(folder)
    if path.name.lower() in GENERIC_NAMES and path.parent.name:
        return path.parent.name
    return path.name


@dataclass
class RunRow:
    """One run folder as the runs list shows it."""

    path: str
    name: str  # given by the user (name.txt), or made from the data folder and the date
    date: str  # ISO time the run started or last wrote its record; "" when unknown
    status: str  # one of STATUSES
    problem: str = ""  # what is wrong with the folder, in a sentence; "" when nothing
    images: str = ""
    masks: str = ""
    pairs: int | None = None
    base: str = ""  # the base model's file name; "bundled" for the bundled one
    changed: dict[str, Any] = field(default_factory=dict)  # settings that differ from defaults
    device: str = ""
    seconds: float | None = None
    base_dice: float | None = None
    best_dice: float | None = None
    best_epoch: int | None = None
    steps: int | None = None
    total_steps: int | None = None
    config: dict[str, Any] | None = None  # the run's settings (TrainConfig fields)
    output: str = ""  # the adapter folder or model file, when it exists

    @property
    def deletable(self) -> bool:
        return self.status != "running"

    @property
    def resumable(self) -> bool:
        return self.status == "resumable"

    def changed_text(self) -> str:
        return ", ".join(f"{k}={_shown(v)}" for k, v in self.changed.items())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------ listing

def runs_folder() -> Path:
    """Where runs go: ``platformdirs.user_data_dir("loragui")/runs`` (``$LORAGUI_DATA_DIR``
    moves it; the tests point it at a temporary folder)."""
    override = os.environ.get("LORAGUI_DATA_DIR")
    if override:
        return Path(override) / "runs"
    import platformdirs

    return Path(platformdirs.user_data_dir("loragui")) / "runs"


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds anything a run writes."""
    return any((folder / name).exists() for name in (RUN_JSON, CHECKPOINT, METRICS))


def list_runs(folder: str | os.PathLike | None = None) -> list[RunRow]:
    """Every run folder directly under ``folder`` (default: :func:`runs_folder`), newest
    first. A missing runs folder lists nothing."""
    root = Path(folder) if folder is not None else runs_folder()
    try:
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    except OSError:
        return []
    rows = [read_run(p) for p in entries if p.is_dir() and is_run_folder(p)]
    return sorted(rows, key=lambda r: (r.date, r.path), reverse=True)


def read_run(folder: str | os.PathLike) -> RunRow:
    """The row of one run folder; what is wrong with it goes into ``problem``."""
    path = Path(folder)
    try:
        record = read_run_record(path)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        return _without_record(path)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError among them
        return RunRow(str(path), _user_name(path) or path.name, _mtime_iso(path), "damaged",
                      f"its run.json cannot be read ({_reason(exc)}): it is damaged or was "
                      "half-written. Its other files are untouched.")
    version = record.get("record_version", 1)
    if not isinstance(version, int) or version > RECORD_VERSION:
        return RunRow(str(path), _user_name(path) or path.name, _mtime_iso(path), "newer",
                      f"its run.json is of record version {version}, written by a newer "
                      f"loragui (this one reads version {RECORD_VERSION}): update loragui to "
                      "read it.")
    try:
        return _row(path, record)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        return RunRow(str(path), _user_name(path) or path.name, _mtime_iso(path), "damaged",
                      f"its run.json holds unexpected values ({_reason(exc)}).")


def _row(path: Path, record: dict[str, Any]) -> RunRow:
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    dataset = record.get("dataset") if isinstance(record.get("dataset"), dict) else {}
    date = str(record.get("created") or _mtime_iso(path))
    images, masks = str(config.get("images") or ""), str(config.get("masks") or "")
    best = record.get("best") if isinstance(record.get("best"), dict) else {}
    row = RunRow(
        str(path), "", date, "", images=images, masks=masks,
        pairs=as_int(dataset.get("pairs")),
        base=Path(config["base"]).name if config.get("base") else "bundled",
        changed=changed_settings(config), device=str(record.get("device") or ""),
        seconds=as_float(record.get("seconds")), base_dice=as_float(record.get("base_dice")),
        best_dice=as_float(best.get("dice")), best_epoch=as_int(record.get("best_epoch")),
        steps=as_int(record.get("steps")), total_steps=as_int(record.get("total_steps")),
        config=config)
    default_name = dataset_name(images) if images else path.name
    row.name = _user_name(path) or f"{default_name} {date[:16].replace('T', ' ')}".strip()
    out = output_path(path, bool(config.get("full")))
    row.output = str(out) if out.exists() else ""
    row.status, row.problem = _status(path, record, row)
    if record.get("status") == "running":  # its record has no steps yet: metrics.csv has
        row.steps = _metrics_steps(path)
    return row


def _status(path: Path, record: dict[str, Any], row: RunRow) -> tuple[str, str]:
    status = str(record.get("status") or "")
    has_checkpoint = (path / CHECKPOINT).is_file()
    full = bool((row.config or {}).get("full"))
    what = f"model file ({MODEL_FILE})" if full else f"adapter ({ADAPTER}/)"
    missing = "" if row.output else f"its {what} is missing."
    if status == "running":
        process = record.get("process") if isinstance(record.get("process"), dict) else {}
        if process_alive(process):
            return "running", ""
        done = _metrics_steps(path)
        if has_checkpoint:
            return "resumable", ("its training process ended without finishing (killed or "
                                 "crashed); it can be resumed from its last checkpoint.")
        return "failed", (f"its training process ended without finishing (killed or crashed) "
                          f"{'after step ' + str(done) if done else 'before its first epoch'}.")
    if status not in ("finished", "stopped", "failed"):
        return "damaged", f"its run.json gives no known status ({status or 'none'})."
    problem = str(record.get("error") or "") if status == "failed" else ""
    if status != "finished" and has_checkpoint and row.steps is not None \
            and row.total_steps and row.steps < row.total_steps:
        status = "resumable"
    if status != "failed" and missing:
        problem = missing
    return status, problem


def _without_record(path: Path) -> RunRow:
    """A folder with a run's files but no run.json: a run killed before its first epoch
    was recorded, or one whose run.json was removed."""
    name = _user_name(path) or path.name
    if (path / CHECKPOINT).is_file():
        return RunRow(str(path), name, _mtime_iso(path), "resumable",
                      "it has no run.json (its training was interrupted); its checkpoint "
                      "can be resumed.", steps=_metrics_steps(path))
    return RunRow(str(path), name, _mtime_iso(path), "damaged",
                  "it has no run.json: its training was interrupted before anything could be "
                  "resumed, or the file was removed.", steps=_metrics_steps(path))


def process_alive(process: dict[str, Any]) -> bool:
    """Whether the process a running record names still runs. A process on another
    machine (a shared folder) cannot be checked from here: it counts as alive."""
    pid = process.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if process.get("host") and process.get("host") != platform.node():
        return True
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill would end the process there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # query limited info
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True


# ------------------------------------------------------------------ settings

def changed_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The run's settings that differ from TrainConfig's defaults, in declaration order
    (the data folders, the run folder and the base model have columns of their own)."""
    return {name: config[name] for name, default in DEFAULTS.items()
            if name not in _NOT_SETTINGS and name in config and config[name] != default}


def train_again_config(row: RunRow) -> TrainConfig:
    """The run's settings for a new run: no run folder, not a resume; data folders that
    no longer exist are left empty."""
    config = TrainConfig.from_dict(row.config or {})
    config.out, config.resume = "", False
    if config.images and not Path(config.images).is_dir():
        config.images = ""
    if config.masks and not Path(config.masks).is_dir():
        config.masks = ""
    return config


def command_line(row: RunRow) -> str:
    """The ``loragui train`` command that repeats the run (into a new run folder)."""
    config = TrainConfig.from_dict(row.config or {})
    config.out, config.resume = "", False
    return config.command_line()


# ------------------------------------------------------------------ acting on a run

def rename_run(folder: str | os.PathLike, name: str) -> None:
    """Give the run a name (name.txt, written atomically); an empty name restores the
    default one."""
    path = Path(folder) / NAME_FILE
    name = " ".join(name.split())
    if name:
        atomic_write_text(path, name + "\n")
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# What loragui writes into a run folder: delete removes these and nothing else.
_RUN_ENTRIES = frozenset(RUN_FILES) | {PREVIEWS, ADAPTER, MODEL_FILE}


def delete_run(folder: str | os.PathLike) -> list[str]:
    """Remove a run folder's files (those loragui writes, and their temporaries), then the
    folder if nothing else is left in it. Returns the names of what was kept (files loragui
    did not write). Refuses a running run and a folder that is not a run's."""
    path = Path(folder)
    if not path.is_dir() or not is_run_folder(path):
        raise LoraGuiError(f"{path} is not a run folder: nothing was deleted.")
    row = read_run(path)
    if row.status == "running":
        raise LoraGuiError(f"the run in {path} is training: stop it before deleting it.")
    kept = []
    for entry in sorted(path.iterdir()):
        if entry.name in _RUN_ENTRIES or _temporary_of_run_file(entry.name):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        else:
            kept.append(entry.name)
    if not kept:
        path.rmdir()
    return kept


def _temporary_of_run_file(name: str) -> bool:
    return any(name.startswith(f".{n}.") for n in _RUN_ENTRIES)


# ------------------------------------------------------------------ small readers

def _user_name(path: Path) -> str:
    try:
        return " ".join((path / NAME_FILE).read_text(encoding="utf-8").split())[:200]
    except (OSError, UnicodeDecodeError):
        return ""


def _metrics_steps(path: Path) -> int | None:
    """The step of the last epoch in metrics.csv, or None."""
    try:
        rows = read_metrics(path)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return as_int(rows[-1].get("step")) if rows else None


def _mtime_iso(path: Path) -> str:
    try:
        stamp = (path / RUN_JSON).stat().st_mtime if (path / RUN_JSON).exists() \
            else path.stat().st_mtime
    except OSError:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(stamp))


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def as_float(value: Any) -> float | None:
    """A number read from a record or a CSV cell; None when it is not one (or NaN)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN: not measured


def as_int(value: Any) -> int | None:
    number = as_float(value)
    return int(number) if number is not None else None


def duration(seconds: float | None) -> str:
    """A run's duration for people: "45 s", "12 min 05 s", "2 h 03 min"."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)
