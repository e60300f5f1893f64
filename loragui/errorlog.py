"""The details of an unexpected failure of the command line, in a log file.

A user's input never produces a traceback: the engine raises LoraGuiError with a
message for a person. Anything else is a bug or an environment fault; the
command line then prints one line that names a log file holding the details
(loragui's version, the command, the traceback), under platformdirs' user log
folder for loragui (``$LORAGUI_LOG_DIR`` wins; the tests point it at a temporary
folder). platformdirs is imported here, by the command line only: the engine
stays importable without it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from . import __version__


def log_dir() -> Path:
    override = os.environ.get("LORAGUI_LOG_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_log_dir("loragui"))


def write_details(details: str) -> Path | None:
    """Write ``details`` to a new log file; its path, or None where none can be written."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    text = (f"loragui {__version__}, Python {sys.version.split()[0]}, {sys.platform}\n"
            f"command: {' '.join(sys.argv)}\n\n{details.rstrip()}\n")
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"error-{stamp}-{os.getpid()}.log"
        path.write_text(text, encoding="utf-8", errors="backslashreplace")
    except (OSError, ImportError):
        return None
    return path


def report_unexpected(summary: str, details: str) -> int:
    """One line for an unexpected failure, naming the log of its details; exit status 1."""
    from .terminal import say

    path = write_details(details)
    where = (f"the details are in {path}; please report the problem with that file"
             if path is not None else "no log could be written; please report the problem")
    say(f"loragui: error: unexpected failure ({summary}); {where}", sys.stderr)
    return 1
