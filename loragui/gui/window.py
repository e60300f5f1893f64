"""The main window: data and settings on the left, the run on the right.

Nothing slow runs on the GUI thread: training runs in a child process
(``child.py``); scanning, thumbnails, exporting and predicting happen in worker
threads (``workers.py``); the plotting library and torch are imported after the
first paint (``StartupWorker``).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QPalette
from PySide6.QtWidgets import (
    QDockWidget,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from . import dialogs, qtfix
from .datapanel import DataPanel
from .logview import LogView, level_colour
from .menus import build_menus, restore_geometry, save_geometry
from .outputs import AfterTraining
from .prefs import REMEMBERED_TRAIN_FIELDS, Preferences, new_run_dir
from .results import ResultsPanel
from .resume import ResumeOffer
from .runactions import RunsHistory
from .runs import RunsView
from .settings import SettingsPanel
from .workers import StartupWorker, Worker

qtfix.keep_singletons_alive()  # before anything is drawn: see qtfix.py

# Pressing Train: the training view is shown this much later, the preferences written
# later still (each in an event-loop pass of its own, see _start_run).
SHOW_VIEW_DELAY_MS = 20
PREFS_SAVE_DELAY_MS = 400

WELCOME = """
<h2>Adapt the segmentation model to your images</h2>
<ol>
<li>Drop a folder of <b>images</b> and a folder of <b>masks</b> on the left
(or one folder holding <i>images/</i> and <i>masks/</i>).</li>
<li>Check the settings: the defaults are a good start.</li>
<li>Press <b>Train</b> (Ctrl+Return). The loss and Dice curves and the predicted
masks appear here while it trains; Stop (Esc) keeps the best adapter so far.</li>
<li>Export the adapter (Ctrl+E), or predict masks for a folder of new images.</li>
</ol>
"""


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
        self.training_view = None
        self.result = None  # last RunFinished / RunFailed
        self.warnings: list[str] = []  # warnings and errors logged since the run started
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
            show_training_view=self._show_training_view, track=self._track)
        build_menus(self)
        restore_geometry(self)
        self.settings.set_values(self.prefs.train)
        self.data.set_browse_dir(self.prefs.browse_dir)
        for note in self.prefs.notes:  # what of the preferences file was not usable
            self.log(f"Preferences: {note}", "warning")
        self._update_state()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        self.data = DataPanel()
        self.data.changed.connect(self._data_changed)
        self.data.failed.connect(lambda m, d: dialogs.show_error(self, m, d, "Cannot use this folder"))
        self.data.logged.connect(self.log)
        self.data.sampleRequested.connect(self.open_sample_data)
        self.settings = SettingsPanel()
        self.settings.changed.connect(self._update_state)

        data_box = QGroupBox("Data")
        QVBoxLayout(data_box).addWidget(self.data)
        settings_box = QGroupBox("Settings")
        QVBoxLayout(settings_box).addWidget(self.settings)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(data_box)
        left_layout.addWidget(settings_box)
        left_layout.addStretch(1)
        self.left_scroll = QScrollArea()
        self.left_scroll.setWidgetResizable(True)
        self.left_scroll.setWidget(left)
        self.left_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.left_scroll.setMinimumWidth(400)

        style = self.style()
        self.train_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaPlay), "Train")
        self.train_button.setToolTip("Start training (Ctrl+Return)")
        self.train_button.clicked.connect(self.start_training)
        self.stop_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaStop), "Stop")
        self.stop_button.setToolTip("Stop after the current step and keep the best adapter (Esc)")
        self.stop_button.clicked.connect(self.stop_training)
        self.resume_button = QPushButton(style.standardIcon(QStyle.StandardPixmap.SP_MediaSeekForward),
                                         "Resume")
        self.reason = QLabel()
        self.reason.setWordWrap(True)
        self.reason.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        # Its place is kept while hidden: showing it at Train then moves nothing, and the
        # training view keeps its size (a resize repaints every plot and preview).
        keep = self.progress.sizePolicy()
        keep.setRetainSizeWhenHidden(True)
        self.progress.setSizePolicy(keep)
        self.progress.hide()
        run_bar = QHBoxLayout()
        run_bar.addWidget(self.train_button)
        run_bar.addWidget(self.stop_button)
        run_bar.addWidget(self.resume_button)
        run_bar.addWidget(self.reason, 1)

        self.welcome = QLabel(WELCOME)
        self.welcome.setWordWrap(True)
        self.welcome.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.welcome.setMaximumWidth(720)
        self.welcome.setContentsMargins(24, 12, 24, 48)
        self.welcome.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        welcome_page = QWidget()
        welcome_layout = QHBoxLayout(welcome_page)
        welcome_layout.addWidget(self.welcome, 0, Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(welcome_page)
        self.results = ResultsPanel()
        self.results.hide()

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addLayout(run_bar)
        right_layout.addWidget(self.progress)
        right_layout.addWidget(self.stack, 1)
        right_layout.addWidget(self.results)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.left_scroll)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([440, 960])
        self.setCentralWidget(self.splitter)

        self.log_view = LogView()
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("LogDock")
        self.log_dock.setWidget(self.log_view)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.resizeDocks([self.log_dock], [120], Qt.Orientation.Vertical)
        self.runs_view = RunsView(track=self._track, log=self.log)
        self.runs_dock = QDockWidget("Runs", self)
        self.runs_dock.setObjectName("RunsDock")
        self.runs_dock.setWidget(self.runs_view)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.runs_dock)
        self.tabifyDockWidget(self.log_dock, self.runs_dock)
        self.log_dock.raise_()
        # The list is read when first shown (a worker thread), and again after each run.
        self.runs_dock.visibilityChanged.connect(
            lambda shown: shown and not self.runs_view.loaded and self.runs_view.refresh())
        self.warning_label = QLabel()  # the latest warning, until the next run starts
        self.warning_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warning_label.hide()
        self.statusBar().addPermanentWidget(self.warning_label)  # made now: no layout shift later
        self.resize(1400, 900)

    # ------------------------------------------------------------------ start-up
    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._shown:
            self._shown = True
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
        from .dropzone import local_paths

        if not self.training() and local_paths(event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        """A drop outside the zones: the images folder first, then the masks folder
        (a folder holding images/ and masks/ fills both)."""
        from .dropzone import folder_from_paths, local_paths

        folder = folder_from_paths(local_paths(event.mimeData().urls()))
        if folder is not None and not self.training():
            event.acceptProposedAction()
            target = "masks" if self.data.images_dir and not self.data.masks_dir else "images"
            self.data.choose(target, folder)

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
            return "Add the folder of masks to train."
        if self.data.scanning:
            return "Looking for image/mask pairs…"
        if self.data.report is None:
            return "These folders cannot be used (see the report)."
        if self.data.pair_count == 0:
            return "No image has a matching mask: nothing to train on."
        if self.settings.needs_base:
            return "Choose a base model (none is bundled)."
        if self.starting_up():
            return "Starting up…"
        return ""

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
        if not training:
            n = self.data.pair_count
            self.reason.setText(blocker or f"Ready: {n} pair{'s' if n != 1 else ''}.")
        self.settings.set_paths(str(self.data.images_dir or ""), str(self.data.masks_dir or ""))

    def log(self, message: str, level: str = "info") -> None:
        """Add a line to the log; warnings and errors stand out there and in the status
        bar, where the latest stays (with a count of the others) until the next run."""
        headline = self.log_view.add(message, level)
        colour = level_colour(level, self.palette(), QPalette.ColorRole.Window)
        if colour is None:
            return
        self.warnings.append(headline)
        first = message.split("\n", 1)[0]
        short = first if len(first) <= 110 else first[:107] + "…"
        more = f"  (+{len(self.warnings) - 1} more in the log)" if len(self.warnings) > 1 else ""
        self.warning_label.setText(f"<span style='color:{colour}'>⚠ {html.escape(short)}</span>"
                                   + html.escape(more))
        self.warning_label.setToolTip("\n".join(self.warnings[-10:]))
        self.warning_label.show()

    # ------------------------------------------------------------------ training
    def _build_training_view(self):
        """The curves and previews (~0.1 s of pyqtgraph set-up): made while the
        window is idle after start-up, so pressing Train does not pay for it."""
        if self.training_view is None:
            from loragui.engine.config import TrainConfig  # torch-free

            from .training import TrainingView  # pyqtgraph: imported by the start-up thread

            self.training_view = TrainingView()
            self.stack.addWidget(self.training_view)
            self.training_view.previews.prepare(TrainConfig().previews)
            # Lay it out and paint it once, off screen: the first real paint, when
            # training starts, then finds its fonts and pictures ready.
            self.training_view.resize(self.stack.size())
            self.training_view.grab()
        if self._awaiting_plots:
            self._awaiting_plots = False
            self._update_state()
        return self.training_view

    def _show_training_view(self) -> None:
        """The training view replaces the welcome page; its previews are painted in the
        next pass (the plots' first paint after a re-layout is the costly part)."""
        view = self.training_view
        if view is None or self.stack.currentWidget() is view:
            return
        view.previews.setUpdatesEnabled(False)
        self.stack.setCurrentWidget(view)
        QTimer.singleShot(SHOW_VIEW_DELAY_MS, lambda: view.previews.setUpdatesEnabled(True))

    def start_training(self) -> None:
        blocker = self.train_blocker()
        if blocker:
            self.statusBar().showMessage(blocker, 5000)
            return
        extra = {"out": str(new_run_dir()), "invert_masks": self.data.invert_masks.isChecked()}
        extra |= self.config_overrides
        config = self.settings.make_config(self.data.images_dir, self.data.masks_dir, **extra)
        self.prefs.train = {k: v for k, v in self.settings.values().items() if k in REMEMBERED_TRAIN_FIELDS}
        # A file write: later, not among the first paints of the run.
        QTimer.singleShot(PREFS_SAVE_DELAY_MS, self.prefs.save)
        self._start_run(config)

    def _start_run(self, config) -> None:
        """Train as ``config`` says (``config.resume``: continue the run in ``config.out``)."""
        from .training import TrainingRun

        self.result = None
        self.outputs.set_run(None, None)
        self.warnings.clear()
        self.warning_label.hide()
        self.resume_offer.withdraw()
        self.results.show_running(config.out)
        view = self._build_training_view()
        if self.run is not None:
            self.run.deleteLater()  # the previous, finished run
        self.run = TrainingRun(view, config, self.run_training, parent=self)
        self.run.progress.connect(self._progress)
        self.run.logged.connect(self.log)
        self.run.ended.connect(self._run_ended)
        # Not the busy animation: it repaints continuously (an eighth of a core) while
        # the child process starts, when the CPU is needed most.
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("Preparing the data and the model…")
        self.progress.show()
        if config.resume:
            self.log(f"Resuming the run in {config.out}")
        else:
            self.log(f"Starting: {config.command_line()}")
        self.reason.setText("Training…")
        self.run.start()
        self._update_state()
        # The curves and previews replace the welcome page in a pass of their own: its
        # layout and first paint (~30 ms) then do not add to the repaint of the settings
        # and buttons this press changed (two short pauses of the window instead of one long).
        QTimer.singleShot(SHOW_VIEW_DELAY_MS, self._show_training_view)

    def stop_training(self) -> None:
        if self.training() and not self.run.stopping:
            self.run.stop()
            self.log("Stopping after the current step; the best adapter so far is kept.")
            self.progress.setFormat("Stopping after the current step…")
            self.reason.setText("Stopping…")
            self._update_state()

    def _progress(self, step: int, total: int, text: str) -> None:
        # QProgressBar.setValue repaints at once (a paint and a flush of its own, ~4 ms);
        # with updates held back, the bar is painted with the curves in the next pass.
        bar = self.progress
        bar.setUpdatesEnabled(False)
        try:
            if bar.maximum() != max(total, 1):
                bar.setRange(0, max(total, 1))
            bar.setValue(step)
            bar.setFormat(text)
        finally:
            bar.setUpdatesEnabled(True)  # (schedules one update)

    def _run_ended(self, result) -> None:
        from loragui.engine.events import RunFinished  # (numpy: not imported at start-up)

        finished = isinstance(result, RunFinished)  # else a RunFailed
        self.result = result
        self.outputs.set_run(result, self.run.config)
        self.progress.hide()
        self.results.show_result(result)
        if not self._close_when_stopped:
            self.outputs.check_adapter()  # PEFT-loadable? (the results panel, the export dialog)
            if result.run_dir and not (finished and not result.stopped):
                self.resume_offer.check(result.run_dir)  # stopped or failed: offer Resume
        if finished:
            verb = "Stopped" if result.stopped else "Finished"
            self.log(f"{verb} after {result.steps} steps. Adapter: {result.output}")
            if result.early_stopped:
                self.log(f"Training ended early: {result.reason}.")
            if self.results.is_warning:
                self.log("The adapter is not better than the base model on the validation images.",
                         "warning")
        else:
            self.log(f"{result.message}\n{result.details}".rstrip(), "error")
            if not self._close_when_stopped:
                dialogs.show_error(self, result.message, result.details, "Training failed")
        self._update_state()
        if self.runs_view.loaded and not self._close_when_stopped:
            self.runs_view.refresh()
        if self._close_when_stopped:
            self.close()

    # ------------------------------------------------------------------ closing
    def _track(self, worker: Worker) -> None:
        self._jobs.add(worker)
        worker.finished.connect(lambda: self._jobs.discard(worker))

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.training():
            event.ignore()
            if self._close_when_stopped or self.run.stopping:
                # Already stopping (a long validation, a slow disk): offer to quit now.
                if dialogs.ask_yes_no(self, "Training is stopping",
                                      "Training is finishing its current step. Quit now without "
                                      "waiting?\n\nThe checkpoint of the last finished epoch and "
                                      "the best adapter are kept; the steps since are lost."):
                    self._close_when_stopped = True
                    self.run.abort()
                return
            if dialogs.ask_yes_no(self, "Training is running",
                                  "Stop training and close the window?\n\nThe best adapter "
                                  "so far is kept in the run folder, and the run can be "
                                  "resumed later."):
                self._close_when_stopped = True
                self.stop_training()
            return
        for worker in list(self._jobs):
            worker.cancel()
        self.data.shutdown()
        for worker in list(self._jobs):
            worker.wait()
        self.prefs.train = {k: v for k, v in self.settings.values().items() if k in REMEMBERED_TRAIN_FIELDS}
        self.prefs.save()
        save_geometry(self)
        self._closed = True
        event.accept()
