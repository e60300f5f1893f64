"""Resume an interrupted run: the last run of the runs folder at start, the run
that just stopped or failed, or a run folder chosen from the Run menu.

:func:`~loragui.engine.checkpoint.find_resumable` (which imports torch) is called in
a worker thread; when it finds a checkpoint short of the last step, the window
shows "Resume (step X of Y)", which continues that run in its own folder with
its own settings (``loragui train --resume``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QPushButton, QWidget

from loragui.engine.runrecord import CHECKPOINT, RUN_JSON

from . import dialogs
from .prefs import data_dir
from .workers import CallWorker, Worker


def _last_written(run: Path) -> float:
    times = []
    for p in (run, run / CHECKPOINT, run / RUN_JSON):
        try:
            times.append(p.stat().st_mtime)
        except OSError:
            pass
    return max(times, default=0.0)


def latest_run(runs: Path) -> Path | None:
    """The run folder in ``runs`` written to last, or None."""
    try:
        folders = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return None
    return max(folders, key=_last_written, default=None)


def resumable(run_dir: str | Path | None = None) -> dict[str, Any] | None:
    """``find_resumable`` of ``run_dir``, or of the latest run in the runs folder."""
    from loragui.engine.checkpoint import find_resumable

    if run_dir is None:
        run_dir = latest_run(data_dir() / "runs")
        if run_dir is None:
            return None
    info = find_resumable(run_dir)
    if info is not None and not info.get("total_steps"):
        return None
    return info


def resume_label(info: dict[str, Any]) -> str:
    return f"Resume (step {info['step']} of {info['total_steps']})"


class ResumeOffer(QObject):
    """The Resume button and what it continues.

    ``parent`` is the dialogs' parent; ``button`` is shown with the step to resume
    from; ``training()`` says whether a run is under way (an offer found meanwhile is
    dropped); ``start_run(config)`` starts the resumed run; ``log(message, level)``
    reports; ``track(worker)`` hands each look-up to the owner, which waits for it on
    closing; ``changed()`` is called whenever the offer changes.
    """

    def __init__(self, parent: QWidget, button: QPushButton, *, training: Callable[[], bool],
                 start_run: Callable[[Any], None], log: Callable[..., None],
                 track: Callable[[Worker], None], changed: Callable[[], None]) -> None:
        super().__init__(parent)
        self.window, self.button = parent, button
        self._training, self._start_run, self._log = training, start_run, log
        self._track, self._changed = track, changed
        self.info: dict[str, Any] | None = None  # find_resumable's answer on offer, if any
        self._withdrawn: dict[str, Any] | None = None  # the offer a starting run took down
        button.clicked.connect(self.resume)
        button.hide()  # shown when an interrupted run can be continued

    def check(self, run_dir: str | Path | None = None, *, ask: bool = False) -> CallWorker:
        """Look for a resumable run off the GUI thread; offer Resume if there is one."""
        worker = CallWorker(resumable, run_dir)
        worker.succeeded.connect(lambda info: self._found(info, run_dir, ask))
        worker.failed.connect(lambda m, d: self._log(f"Could not check for a run to resume: {m}",
                                                     "warning"))
        self._track(worker)
        worker.start()
        return worker

    def _found(self, info: dict[str, Any] | None, run_dir, ask: bool) -> None:
        if self._training():
            return
        self.offer(info)
        if info is None:
            if ask:
                dialogs.show_error(self.window, f"The run in {run_dir} cannot be resumed: it has "
                                   "no checkpoint, its checkpoint cannot be read, or it reached "
                                   "its last step.", title="Nothing to resume")
            return
        where = Path(info["run_dir"]).name
        self._log(f"The run {where} can be continued from step {info['step']} of "
                  f"{info['total_steps']}: press {resume_label(info)}.")
        if ask and dialogs.ask_yes_no(self.window, "Resume training",
                                      f"Continue the run in {info['run_dir']} from step "
                                      f"{info['step']} of {info['total_steps']}?"):
            self.resume()

    def offer(self, info: dict[str, Any] | None) -> None:
        """Show Resume for ``info`` (``find_resumable``'s answer), or hide it (None)."""
        self.info = info
        if info is None:
            self.button.hide()
        else:
            self.button.setText(resume_label(info))
            self.button.setToolTip(
                f"Continue the run in {info['run_dir']} from its checkpoint (saved "
                f"{info.get('saved') or 'at its last epoch'}), with its own settings")
            self.button.show()
        self._changed()

    def withdraw(self) -> None:
        """A run starts: nothing is on offer until it ends."""
        self._withdrawn, self.info = self.info, None
        self.button.hide()

    def restore(self) -> None:
        """The run that took the offer down never started: the offer is back."""
        info, self._withdrawn = self._withdrawn, None
        if info is not None and Path(info["run_dir"]).is_dir():
            self.offer(info)

    def resume(self) -> None:
        info = self.info
        if info is None or self._training():
            return
        from loragui.engine.config import TrainConfig  # torch-free

        config = TrainConfig.from_dict(info["config"])
        config.resume = True
        config.out = info["run_dir"]
        self._start_run(config)

    def choose_run(self) -> None:
        """Ask for a run folder (Run → Resume a run…) and offer to continue it."""
        if self._training():
            return
        start = data_dir() / "runs"
        folder = QFileDialog.getExistingDirectory(self.window, "Run folder to resume",
                                                  str(start if start.is_dir() else Path.home()))
        if folder:
            self.check(folder, ask=True)
