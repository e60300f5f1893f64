"""Resume an interrupted run: the last run of the runs folder at start, the run
that just stopped or failed, or a run folder chosen from the Run menu.

:func:`~loragui.engine.checkpoint.find_resumable` (which imports torch) is called in
a worker thread; when it finds a checkpoint short of the last step, the window
shows "Resume (step X of Y)", which continues that run in its own folder with
its own settings (``loragui train --resume``).

A mixin of :class:`~loragui.gui.window.MainWindow`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QFileDialog

from loragui.engine.runrecord import CHECKPOINT, RUN_JSON

from . import dialogs
from .prefs import data_dir
from .workers import CallWorker


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


class ResumeMixin:
    """Needs from the window: ``resume_button``, ``resume_action``, ``training()``,
    ``_start_run(config)``, ``log()``, ``_track()``."""

    resumable_run: dict[str, Any] | None = None

    def check_resumable(self, run_dir: str | Path | None = None, *,
                        ask: bool = False) -> CallWorker:
        """Look for a resumable run off the GUI thread; offer Resume if there is one."""
        worker = CallWorker(resumable, run_dir)
        worker.succeeded.connect(lambda info: self._resumable_found(info, run_dir, ask))
        worker.failed.connect(lambda m, d: self.log(f"Could not check for a run to resume: {m}",
                                                    "warning"))
        self._track(worker)
        worker.start()
        return worker

    def _resumable_found(self, info: dict[str, Any] | None, run_dir, ask: bool) -> None:
        if self.training():
            return
        self.set_resumable(info)
        if info is None:
            if ask:
                dialogs.show_error(self, f"The run in {run_dir} cannot be resumed: it has no "
                                   "checkpoint, its checkpoint cannot be read, or it reached its "
                                   "last step.", title="Nothing to resume")
            return
        where = Path(info["run_dir"]).name
        self.log(f"The run {where} can be continued from step {info['step']} of "
                 f"{info['total_steps']}: press {resume_label(info)}.")
        if ask and dialogs.ask_yes_no(self, "Resume training",
                                      f"Continue the run in {info['run_dir']} from step "
                                      f"{info['step']} of {info['total_steps']}?"):
            self.resume_training()

    def set_resumable(self, info: dict[str, Any] | None) -> None:
        self.resumable_run = info
        if info is None:
            self.resume_button.hide()
        else:
            self.resume_button.setText(resume_label(info))
            self.resume_button.setToolTip(
                f"Continue the run in {info['run_dir']} from its checkpoint (saved "
                f"{info.get('saved') or 'at its last epoch'}), with its own settings")
            self.resume_button.show()
        self._update_state()

    def resume_training(self) -> None:
        info = self.resumable_run
        if info is None or self.training():
            return
        from loragui.engine.config import TrainConfig  # torch-free

        config = TrainConfig.from_dict(info["config"])
        config.resume = True
        config.out = info["run_dir"]
        self._start_run(config)

    def choose_run_to_resume(self) -> None:
        if self.training():
            return
        start = data_dir() / "runs"
        folder = QFileDialog.getExistingDirectory(self, "Run folder to resume",
                                                  str(start if start.is_dir() else Path.home()))
        if folder:
            self.check_resumable(folder, ask=True)
