"""Where the window keeps its preferences and runs. Qt-free.

Preferences live in a readable JSON file (``settings.json``) under
``platformdirs.user_config_dir("loragui")``; runs go under
``platformdirs.user_data_dir("loragui")/runs/<timestamp>/``. Both places can be
moved with the ``LORAGUI_CONFIG_DIR`` and ``LORAGUI_DATA_DIR`` environment
variables (the tests point them at a temporary folder). ``QSettings`` is used for
window geometry only, in an INI file beside ``settings.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import platformdirs

from loragui.engine.config import check_value  # torch-free

APP_NAME = "loragui"
SETTINGS_FILE = "settings.json"
GEOMETRY_FILE = "window.ini"


def config_dir() -> Path:
    """The folder holding ``settings.json`` (``$LORAGUI_CONFIG_DIR`` wins)."""
    override = os.environ.get("LORAGUI_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    """The folder holding ``runs/`` (``$LORAGUI_DATA_DIR`` wins)."""
    override = os.environ.get("LORAGUI_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))


def new_run_dir(now: float | None = None) -> Path:
    """A fresh, not yet created ``runs/<timestamp>`` folder (suffixed if taken)."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
    runs = data_dir() / "runs"
    candidate = runs / stamp
    n = 2
    while candidate.exists():
        candidate = runs / f"{stamp}_{n}"
        n += 1
    return candidate


# Training settings remembered between sessions (the folders are kept separately).
REMEMBERED_TRAIN_FIELDS = (
    "base", "device", "rank", "alpha", "epochs", "early_stop", "batch_size", "lr", "crop_size",
    "val_fraction", "targets",
)


@dataclass
class Preferences:
    """Everything the window remembers, written as indented JSON."""

    images_dir: str = ""
    masks_dir: str = ""
    browse_dir: str = ""  # where the last file dialog was
    export_dir: str = ""
    export_kind: str = "peft"  # the form last chosen in the export dialog
    package_authors: list[str] = field(default_factory=list)  # bioimage.io packages' authors
    package_license: str = "MIT"  # and their licence (SPDX id)
    train: dict[str, Any] = field(default_factory=dict)  # subset of TrainConfig
    last_run: str = ""  # the folder of the last run, shown again at the next start

    @classmethod
    def path(cls) -> Path:
        return config_dir() / SETTINGS_FILE

    # What load() put back to its default, one line each, for the window's log (not saved).
    notes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def load(cls) -> Preferences:
        """Read the file; never raises. A missing file gives the defaults; a damaged one
        the defaults with a note; a field of the wrong type (a remembered setting outside
        its declared bounds) its default, with a note naming it."""
        path = cls.path()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, RecursionError) as exc:
            return cls._noted([f"the preferences in {path} cannot be read ({type(exc).__name__}); "
                               "the defaults are used"])
        if not isinstance(data, dict):
            return cls._noted([f"the preferences in {path} are not a JSON object; the defaults "
                               "are used"])
        notes: list[str] = []
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            expected = {"train": dict, "package_authors": list}.get(f.name, str)
            if isinstance(value, expected) and (expected is not list or all(
                    isinstance(v, str) for v in value)):
                values[f.name] = value
            else:
                notes.append(f"the remembered {f.name} ({_shown(value)}) is not usable; its "
                             "default is used")
        values["train"] = _usable_train(values.get("train", {}), notes)
        prefs = cls(**values)
        if notes:
            prefs.notes = tuple(notes)
        return prefs

    @classmethod
    def _noted(cls, notes: list[str]) -> Preferences:
        prefs = cls()
        prefs.notes = tuple(notes)
        return prefs

    def save(self) -> None:
        """Write atomically (temporary file, fsync, rename: a crash leaves the old file
        or the new one). Errors are ignored: a read-only home folder must not stop the app."""
        from loragui.engine.atomic import atomic_write_text  # torch-free
        from loragui.engine.errors import LoraGuiError

        try:
            atomic_write_text(self.path(), json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        except (OSError, LoraGuiError):
            pass


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _usable_train(train: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """The remembered training settings that their declarations accept (others noted)."""
    usable = {}
    for key, value in train.items():
        if key not in REMEMBERED_TRAIN_FIELDS:
            continue
        try:
            check_value(key, value)
        except ValueError as exc:
            notes.append(f"the remembered setting {key} is not usable ({exc.reason}); its "
                         "default is used")
            continue
        usable[key] = value
    return usable
