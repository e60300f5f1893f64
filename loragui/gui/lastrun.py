"""The last run, shown again after a restart: the preferences keep its folder, and
its curves, predictions and summary fill the run column (through the Runs view's
own review) until a new run starts. Its files are read in a worker thread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .workers import CallWorker, Worker

SHOWN = ("finished", "stopped", "failed", "resumable")  # a run with results to show


def read_last_run(folder: str) -> Any:
    """The RunRow of ``folder`` when it is a run with results to show, else None."""
    from loragui.engine.runs import is_run_folder, read_run

    path = Path(folder) if folder else None
    if path is None or not path.is_dir() or not is_run_folder(path):
        return None
    row = read_run(path)
    return row if row.status in SHOWN and row.config and not row.problem else None


def show_last_run(folder: str, *, review: Callable[[Any], bool], training: Callable[[], bool],
                  track: Callable[[Worker], None]) -> CallWorker | None:
    """Read ``folder`` off the GUI thread, then ``review(row)`` unless a run has started."""
    if not folder:
        return None
    worker = CallWorker(read_last_run, folder)
    worker.succeeded.connect(lambda row: row is not None and not training() and review(row))
    track(worker)
    worker.start()
    return worker
