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
from typing import Any

import platformdirs

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
    "base", "device", "rank", "alpha", "epochs", "batch_size", "lr", "crop_size",
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

    @classmethod
    def path(cls) -> Path:
        return config_dir() / SETTINGS_FILE

    @classmethod
    def load(cls) -> Preferences:
        """Read the file; a missing or damaged file gives the defaults (never raises)."""
        try:
            data = json.loads(cls.path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        prefs = cls(**{k: v for k, v in data.items() if k in known})
        if not isinstance(prefs.train, dict):
            prefs.train = {}
        if not isinstance(prefs.package_authors, list) or not all(
                isinstance(a, str) for a in prefs.package_authors):
            prefs.package_authors = []
        if not isinstance(prefs.package_license, str) or not prefs.package_license:
            prefs.package_license = "MIT"
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
