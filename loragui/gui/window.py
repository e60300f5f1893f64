"""The main window: data and settings on the left, the run on the right.

Nothing slow runs on the GUI thread: training runs in a child process
(``child.py``); scanning, thumbnails, exporting and predicting happen in worker
threads (``workers.py``); the plotting library and torch are imported after the
first paint (``StartupWorker``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QMainWindow,
    QScrollArea,
    QSplitter,
)

from . import dialogs, qtfix
from .basecheck import BaseCheck
from .child import discard_unstarted
from .columns import SETUP_MIN_WIDTH, RunColumn, SetupColumn
from .datapanel import DataPanel
from .lastrun import show_last_run
from .logview import LogView
from .menus import build_menus, fit_to_screen, restore_geometry, save_geometry
from .messages import Messages
from .outputs import AfterTraining
from .prefs import REMEMBERED_TRAIN_FIELDS, Preferences, new_run_dir
from .resume import ResumeOffer
from .reviewing import Reviewing
from .runactions import RunsHistory
from .runs import RunsView
from .settings import SettingsPanel
from .trainingpage import SHOW_VIEW_DELAY_MS, TrainingPage
from .workers import StartupWorker, Worker

qtfix.keep_singletons_alive()  # before anything is drawn: see qtfix.py

# Pressing Train: the training view is shown SHOW_VIEW_DELAY_MS later, the preferences
# written later still (each in an event-loop pass of its own, see _start_run).
PREFS_SAVE_DELAY_MS = 400
OPENING_SIZE = (1400, 900)  # at most: the available screen is the limit
LEFT_WIDTH = 440
LEFT_SHARE = 0.42  # of a narrow window


class MainWindow(QMainWindow):
    firstShown = Signal()  # after the first show has been processed (start-up timing)

    def __init__(self, prefs: Preferences | None = None, *, background: bool = True,
                 run_training: Callable[..., Iterator] | None = None) -> None:
        super().__init__()
        self.prefs = prefs or Preferences.load()
        # None: train in a child process (the product). A generator function (tests):
        # run it in a thread of this process instead.
        self.run_training = run_training
        self.config_overrides: dict[str, Any] = {}  # extra TrainConfig fields (tests, tools)
        self.run = None  # TrainingRun
        self.result = None  # last RunFinished / RunFailed
        self.info: dict[str, Any] = {}  # torch version and devices, for About
        self.sample_dirs: tuple[Path, Path] | None = None
        self.open_sample_when_ready = False  # `loragui --sample`
        self.bundled_known = False
        self._background = background
        # Train waits for the plots (pyqtgraph, imported by the start-up thread): made on
        # the GUI thread at the press, they would freeze the window for half a second.
        self._awaiting_plots = background
        self._shown = False
        self._close_when_stopped = False
        self._closed = False
        self._jobs: set[Worker] = set()
        self._fresh_out: str | None = None  # the run folder the run starting now made

        self.setWindowTitle("loragui")
        self.setAcceptDrops(True)  # a folder dropped anywhere on the window works too
        self._build()
        self.outputs = AfterTraining(
            self, self.prefs, self.results, dataset_name=self.data.dataset_name,
            training=self.training, log=self.log, status=self.statusBar().showMessage,
            track=self._track)
        self.resume_offer = ResumeOffer(
            self, self.resume_button, training=self.training, start_run=self._start_run,
            log=self.log, track=self._track, changed=self._update_state)
        self.runs = RunsHistory(
            self.runs_view, outputs=self.outputs, results=self.results,
            resume_offer=self.resume_offer, settings=self.settings, load_folders=self.load_folders,
            training=self.training, overrides=self.config_overrides, log=self.log,
            changed=self._update_state, training_view=self._build_training_view,
            show_training_view=self.training_page.show, track=self._track)
        self.base_check = BaseCheck(self.settings, track=self._track, changed=self._update_state)
        self.reviewing = Reviewing(self, start_run=self._start_run, track=self._track)
        self.data.may_change = lambda: self.reviewing.may_leave("opening other folders")
        self.run_bar.review_button.clicked.connect(self.reviewing.review_current)
        self.outputs.predictedFolder.connect(lambda images: self.reviewing.review_predicted(Path(images)))
        build_menus(self)
        self._splitter_restored = restore_geometry(self)
        fit_to_screen(self, self.size())  # a geometry saved on a larger screen
        self.settings.set_values(self.prefs.train)
        self.data.set_browse_dir(self.prefs.browse_dir)
        for note in self.prefs.notes:  # what of the preferences file was not usable
            self.log(f"Preferences: {note}", "warning")
        self._update_state()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        self.data = DataPanel()
        self.data.changed.connect(self._data_changed)
        self.data.logged.connect(self.log)
        self.data.sampleRequested.connect(self.open_sample_data)
        self.settings = SettingsPanel()
        self.settings.changed.connect(self._update_state)

        self.left_scroll = SetupColumn(self.data, self.settings)
        self.right_scroll = RunColumn(train=self.start_training, stop=self.stop_training)
        self.run_bar, self.results = self.right_scroll.run_bar, self.right_scroll.results
        self.stack, self.welcome = self.right_scroll.stack, self.right_scroll.welcome
        self.training_page = TrainingPage(self.stack)
        self.train_button, self.stop_button = self.run_bar.train_button, self.run_bar.stop_button
        self.resume_button = self.run_bar.resume_button
        self.reason, self.progress = self.run_bar.reason, self.run_bar.progress

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.left_scroll)
        self.splitter.addWidget(self.right_scroll)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.setCentralWidget(self.splitter)

        self.log_view = LogView()
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("LogDock")
        self.log_dock.setWidget(self.log_view)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        screen = self.screen()
        room = screen.availableGeometry().height() if screen is not None else 900
        # A few lines of log; on a short screen the plots need the room more.
        self.resizeDocks([self.log_dock], [max(60, min(120, room // 9))], Qt.Orientation.Vertical)
        self.runs_view = RunsView(track=self._track, log=self.log)
        self.runs_dock = QDockWidget("Runs", self)
        self.runs_dock.setObjectName("RunsDock")
        # In a scroll area: the list's buttons and the comparison would otherwise set the
        # window's minimum width (wider than a small screen).
        runs_scroll = QScrollArea()
        runs_scroll.setWidgetResizable(True)
        runs_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        runs_scroll.setWidget(self.runs_view)
        self.runs_dock.setWidget(runs_scroll)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.runs_dock)
        self.tabifyDockWidget(self.log_dock, self.runs_dock)
        self.log_dock.raise_()
        # The list is read when first shown (a worker thread), and again after each run.
        self.runs_dock.visibilityChanged.connect(
            lambda shown: shown and not self.runs_view.loaded and self.runs_view.refresh())
        self.messages = Messages(self.log_view, self.statusBar(), self)
        self.warning_label = self.messages.warning_label
        self.warnings = self.messages.warnings
        fit_to_screen(self, OPENING_SIZE)

    def _share_width(self) -> None:
        """The data and settings take up to LEFT_WIDTH, the run's column at least
        the width its parts need (a splitter restored from a wider screen included)."""
        total = sum(self.splitter.sizes())
        left = self.splitter.sizes()[0] if self._splitter_restored else min(
            LEFT_WIDTH, int(LEFT_SHARE * total))
        left = max(SETUP_MIN_WIDTH, min(left, LEFT_WIDTH, total - self.right_scroll.needed_width()))
        self.splitter.setSizes([left, total - left])

    # ------------------------------------------------------------------ start-up
    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            self._share_width()  # (the splitter has its size now)
            QTimer.singleShot(0, self.firstShown.emit)
            if self._background:
                QTimer.singleShot(30, self._start_background)

    def _start_background(self) -> None:
        """Import pyqtgraph and torch, find devices and bundled files, off the GUI thread."""
        self._background = False
        if self._closed:
            return
        worker = StartupWorker()
        worker.plotsReady.connect(lambda: QTimer.singleShot(0, self._build_training_view))
        worker.devicesReady.connect(self._devices_ready)
        worker.bundledReady.connect(self._bundled_ready)
        worker.versionsReady.connect(self.info.update)
        worker.failed.connect(self._startup_failed)
        self._track(worker)
        worker.start()

    def starting_up(self) -> bool:
        """Whether Train still waits for the plots the start-up thread prepares."""
        return self._awaiting_plots

    def _startup_failed(self, message: str, details: str) -> None:
        self.log(f"Start-up problem: {message}\n{details}", "error")
        if self._awaiting_plots:  # Train then makes the plots itself
            self._awaiting_plots = False
            self._update_state()

    def _devices_ready(self, devices: list) -> None:
        self.info["devices"] = devices
        self.settings.set_devices(devices)
        self.settings.set_values({"device": self.prefs.train.get("device", "auto")})
        if not self._closed and not self.training():
            self.resume_offer.check()  # the last run, if it was interrupted
            show_last_run(self.prefs.last_run, review=self.runs.review, training=self.training,
                          track=self._track)  # its results, until a new run starts

    def _bundled_ready(self, base: Path | None, samples: tuple[Path, Path] | None) -> None:
        self.bundled_known = True
        self.sample_dirs = samples
        self.settings.set_bundled_base(base)
        self.sample_action.setEnabled(samples is not None)
        self.data.set_sample_available(samples is not None)
        self._update_state()
        if self.open_sample_when_ready:
            self.open_sample_when_ready = False
            self.open_sample_data()

    # ------------------------------------------------------------------ data
    def load_folders(self, images: Path, masks: Path) -> None:
        self.data.load(Path(images), Path(masks))

    def open_sample_data(self) -> None:
        if self.sample_dirs is None:
            dialogs.show_error(self, "No sample data is bundled with this installation.")
            return
        self.load_folders(*self.sample_dirs)

    def dragEnterEvent(self, event) -> None:
        if not self.training() and self.data.takes_drop(event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        if not self.training() and self.data.drop_outside_zones(event.mimeData().urls()):
            event.acceptProposedAction()

    def _data_changed(self) -> None:
        name = self.data.dataset_name()
        self.setWindowTitle(f"{name} — loragui" if name else "loragui")
        folder = self.data.images_dir or self.data.masks_dir
        if folder is not None:
            self.prefs.browse_dir = str(folder.parent)
            self.data.set_browse_dir(self.prefs.browse_dir)
        if self.data.images_dir and self.data.masks_dir:
            self.prefs.images_dir, self.prefs.masks_dir = str(self.data.images_dir), str(self.data.masks_dir)
        self._update_state()

    # ------------------------------------------------------------------ state
    def training(self) -> bool:
        return self.run is not None and self.run.is_running()

    def train_blocker(self) -> str:
        """Why Train is disabled ("" when it is not)."""
        if self.training():
            return "Stopping…" if self.run.stopping else "Training…"
        if self.data.images_dir is None:
            return "Add a folder of images to train."
        if self.data.masks_dir is None:
            return "Add the folder of masks to train, or review these images with the model."
        if self.data.scanning:
            return "Looking for image/mask pairs…"
        if self.data.report is None:
            return "These folders cannot be used (see the report)."
        if self.data.pair_count == 0:
            return "No image has a matching mask: nothing to train on."
        if self.data.mask_kind.problem():
            return self.data.mask_kind.problem()
        if self.settings.needs_base:
            return "Choose a base model (none is bundled)."
        if self.starting_up():
            return "Starting up…"
        return self.base_check.blocker()

    def _update_state(self) -> None:
        blocker = self.train_blocker()
        training = self.training()
        self.train_button.setEnabled(not blocker)
        self.train_action.setEnabled(not blocker)
        self.stop_button.setEnabled(training and not self.run.stopping)
        self.stop_action.setEnabled(training and not self.run.stopping)
        self.resume_button.setEnabled(not training and self.resume_offer.info is not None)
        self.resume_action.setEnabled(not training)
        self.settings.setEnabled(not training)
        self.data.set_locked(training)
        has_output = self.outputs.output() is not None
        for action in (self.export_action, self.merged_action, self.predict_action):
            action.setEnabled(has_output and not training)
        reviewable = not self.data.scanning and not self.settings.needs_base
        for widget in (self.review_action, self.review_adapter_action, self.run_bar.review_button):
            widget.setEnabled(reviewable)
        if not training:
            n = self.data.pair_count
            self.reason.setText(blocker or f"Ready: {n} pair{'s' if n != 1 else ''}.")
        self.settings.set_paths(str(self.data.images_dir or ""), str(self.data.masks_dir or ""))

    def log(self, message: str, level: str = "info") -> None:
        """Add a line to the log (warnings and errors: see ``messages.py``)."""
        self.messages.log(message, level)

    # ------------------------------------------------------------------ training
    @property
    def training_view(self):
        """The curves and previews, once built (see trainingpage.py)."""
        return self.training_page.view

    def _build_training_view(self):
        view = self.training_page.build()
        if self._awaiting_plots:
            self._awaiting_plots = False
            self._update_state()
        return view

    def start_training(self) -> None:
        blocker = self.train_blocker()
        if blocker:
            self.statusBar().showMessage(blocker, 5000)
            return
        if not self.reviewing.may_leave("training"):  # unsaved corrections: Cancel
            return
        extra = {"out": str(new_run_dir()), "invert_masks": self.data.invert_masks.isChecked(),
                 "masks_hold": self.data.mask_kind.masks_hold}
        extra |= self.config_overrides
        config = self.settings.make_config(self.data.images_dir, self.data.masks_dir, **extra)
        self._remember_settings()
        # A file write: later, not among the first paints of the run.
        QTimer.singleShot(PREFS_SAVE_DELAY_MS, self.prefs.save)
        self._start_run(config)

    def _start_run(self, config) -> None:
        """Train as ``config`` says (``config.resume``: continue the run in ``config.out``)."""
        from .training import TrainingRun

        self.result = None
        # A folder this start makes, removed again if the run never starts.
        self._fresh_out = None if config.resume or Path(config.out).exists() else config.out
        self.outputs.set_run(None, None)
        self.messages.clear()
        self.resume_offer.withdraw()
        self.results.show_running(config.out)
        view = self._build_training_view()
        if self.run is not None:
            self.run.deleteLater()  # the previous, finished run
        self.run = TrainingRun(view, config, self.run_training, parent=self)
        self.run.progress.connect(self.run_bar.set_progress)
        self.run.logged.connect(self.log)
        self.run.ended.connect(self._run_ended)
        self.run_bar.preparing()
        if config.resume:
            self.log(f"Resuming the run in {config.out}")
        else:
            self.log(f"Starting: {config.command_line()}")
        self.run.start()
        self._update_state()
        # The curves and previews replace the welcome page in a pass of their own: its
        # layout and first paint (~30 ms) then do not add to the repaint of the settings
        # and buttons this press changed (two short pauses of the window instead of one long).
        QTimer.singleShot(SHOW_VIEW_DELAY_MS, self.training_page.show)

    def stop_training(self) -> None:
        if self.training() and not self.run.stopping:
            self.run.stop()
            self.log("Stopping after the current step; the best adapter so far is kept.")
            self.run_bar.stopping()
            self._update_state()

    def _run_ended(self, result) -> None:
        from loragui.engine.events import RunFinished  # (numpy: not imported at start-up)

        finished = isinstance(result, RunFinished)  # else a RunFailed
        never_started = self.run.info is None and not finished
        if never_started and self._fresh_out and discard_unstarted(self._fresh_out):
            result.run_dir = ""  # nothing of it is left to open or resume
        self.result = result
        if result.run_dir and not never_started:  # (else the run before stays the last)
            self.prefs.last_run = str(result.run_dir)
            QTimer.singleShot(PREFS_SAVE_DELAY_MS, self.prefs.save)
        self.outputs.set_run(result, self.run.config)
        self.run_bar.ended()
        self.results.show_result(result)
        best = self.run.best_epoch
        if best is not None and best.classes:
            self.results.show_classes(best.classes, self.run.class_colours(), best.dice, best.iou)
        self.reviewing.run_ended(result, self.run.config)
        if not self._close_when_stopped:
            self.outputs.check_adapter()  # PEFT-loadable? (the results panel, the export dialog)
            if never_started:
                self.resume_offer.restore()  # the earlier run's offer, if there was one
            elif result.run_dir and not (finished and not result.stopped):
                self.resume_offer.check(result.run_dir)  # stopped or failed: offer Resume
        self.messages.run_ended(result, finished=finished, not_better=self.results.is_warning)
        self._update_state()
        if self.runs_view.loaded and not self._close_when_stopped:
            self.runs_view.refresh()
        if self._close_when_stopped:
            self.close()

    def _remember_settings(self) -> None:
        self.prefs.train = {k: v for k, v in self.settings.values().items()
                            if k in REMEMBERED_TRAIN_FIELDS}

    # ------------------------------------------------------------------ closing
    def _track(self, worker: Worker) -> None:
        self._jobs.add(worker)
        worker.finished.connect(lambda: self._jobs.discard(worker))

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._close_when_stopped and not self.reviewing.may_close():
            event.ignore()  # unsaved corrections: the user chose Cancel
            return
        if self.training():
            event.ignore()
            stopping = self._close_when_stopped or self.run.stopping
            if dialogs.confirm_close_while_training(self, stopping):
                self._close_when_stopped = True
                if stopping:  # a long validation, a slow disk: quit now
                    self.run.abort()
                else:
                    self.stop_training()
            return
        for worker in list(self._jobs):
            worker.cancel()
        self.data.shutdown()
        self.reviewing.shutdown()
        for worker in list(self._jobs):
            worker.wait()
        self._remember_settings()
        self.prefs.save()
        save_geometry(self)
        self._closed = True
        event.accept()
