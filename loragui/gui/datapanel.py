"""The Data box: the Images and Masks drop zones, the pairing report and the
thumbnails. Scanning and thumbnail decoding run in worker threads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from loragui.engine.runs import dataset_name

from .dropzone import DropZone, folder_from_paths, local_paths
from .maskkind import MaskKindChooser, window_choice
from .report import PairingReportView
from .workers import ScanWorker, ThumbnailWorker, Worker

N_THUMBNAILS = 8


class DataPanel(QWidget):
    """``changed()`` after the folders or the report changed; ``failed(message,
    details)`` when a folder cannot be used (the report box says why: nothing else
    needs to); ``logged(message, level)``."""

    changed = Signal()
    failed = Signal(str, str)
    logged = Signal(str, str)
    sampleRequested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.images_dir: Path | None = None
        self.masks_dir: Path | None = None
        self.report = None
        self._scan: ScanWorker | None = None
        # Asked before other folders are taken (the window: unsaved corrections of a review).
        self.may_change: Callable[[], bool] = lambda: True
        self._thumbs: ThumbnailWorker | None = None
        self._workers: set[Worker] = set()

        self.images_zone = DropZone("Images", "Drop a folder of images here<br>or click to choose")
        self.masks_zone = DropZone("Masks", "Drop a folder of masks here<br>or click to choose")
        self.images_zone.folderChosen.connect(lambda f: self.choose("images", f))
        self.masks_zone.folderChosen.connect(lambda f: self.choose("masks", f))
        self.sample_link = QLabel("<a href='sample'>Open the sample data</a> to try it out")
        self.sample_link.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse
                                                 | Qt.TextInteractionFlag.LinksAccessibleByKeyboard)
        self.sample_link.linkActivated.connect(lambda _: self.sampleRequested.emit())
        self.sample_link.hide()
        self.report_view = PairingReportView()
        self.mask_kind = MaskKindChooser()
        self.mask_kind.changed.connect(self._mask_kind_changed)
        self.invert_masks = QCheckBox("Invert masks (the objects are black)")
        self.invert_masks.setToolTip("Train with every mask the other way round: for masks "
                                     "whose objects are 0 and background non-zero")

        zones = QHBoxLayout()
        zones.addWidget(self.images_zone)
        zones.addWidget(self.masks_zone)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(zones)
        layout.addWidget(self.sample_link)
        layout.addWidget(self.report_view)
        layout.addWidget(self.mask_kind)
        layout.addWidget(self.invert_masks)

    # -- state ----------------------------------------------------------------------------
    @property
    def scanning(self) -> bool:
        return self._scan is not None

    @property
    def pair_count(self) -> int:
        return len(self.report.pairs) if self.report is not None else 0

    def dataset_name(self) -> str:
        """A name for the data set: the images folder, or its parent for a generic name."""
        folder = self.images_dir or self.masks_dir
        if folder is None:
            return ""
        return dataset_name(folder)

    def set_sample_available(self, available: bool) -> None:
        self.sample_link.setVisible(available and self.images_dir is None)

    def set_locked(self, locked: bool) -> None:
        """No new data while training."""
        for zone in (self.images_zone, self.masks_zone):
            zone.setEnabled(not locked)
            zone.setAcceptDrops(not locked)
        self.invert_masks.setEnabled(not locked)
        self.mask_kind.setEnabled(not locked)

    def set_browse_dir(self, folder: str) -> None:
        self.images_zone.browse_dir = self.masks_zone.browse_dir = folder

    # -- loading --------------------------------------------------------------------------
    def choose(self, target: str, folder: Path) -> None:
        """A folder was dropped on (or chosen for) ``target``: "images" or "masks"."""
        if self.may_change():
            self._start_scan(ScanWorker(target, Path(folder), self.images_dir, self.masks_dir))

    def takes_drop(self, urls) -> bool:
        return bool(local_paths(urls))

    def drop_outside_zones(self, urls) -> bool:
        """A drop beside the zones: the images folder first, then the masks folder (a
        folder holding images/ and masks/ fills both). False: nothing to take."""
        folder = folder_from_paths(local_paths(urls))
        if folder is None:
            return False
        self.choose("masks" if self.images_dir and not self.masks_dir else "images", folder)
        return True

    def load(self, images: Path, masks: Path) -> None:
        """Pair two known folders (the sample data, the command line, the tests)."""
        if self.may_change():
            self._start_scan(ScanWorker("both", None, Path(images), Path(masks)))

    def _start_scan(self, worker: ScanWorker) -> None:
        if self._scan is not None:
            self._scan.cancel()  # its results are ignored from now on
        if self._thumbs is not None:
            self._thumbs.cancel()
            self._thumbs = None
        self._scan = worker
        worker.resolved.connect(lambda i, m: self._resolved(worker, i, m))
        worker.progress.connect(lambda d, t, msg: worker is self._scan
                                and self.report_view.set_progress(d, t, msg))
        worker.succeeded.connect(lambda report: self._scanned(worker, report))
        worker.failed.connect(lambda msg, details: self._scan_failed(worker, msg, details))
        self._track(worker)
        self.report_view.set_scanning()
        self.changed.emit()
        worker.start()

    def _track(self, worker: Worker) -> None:
        self._workers.add(worker)
        worker.finished.connect(lambda: self._finished(worker))

    def _finished(self, worker: Worker) -> None:
        self._workers.discard(worker)
        if worker is self._scan:
            self._scan = None
            self.changed.emit()
        if worker is self._thumbs:
            self._thumbs = None

    def _resolved(self, worker: ScanWorker, images: str, masks: str) -> None:
        if worker is not self._scan:
            return
        changed = (Path(images) if images else None, Path(masks) if masks else None) != (
            self.images_dir, self.masks_dir)
        self.images_dir = Path(images) if images else None
        self.masks_dir = Path(masks) if masks else None
        self.images_zone.set_folder(self.images_dir)
        self.masks_zone.set_folder(self.masks_dir)
        self.sample_link.hide()
        if changed:
            self.report = None
        if self.images_dir is None:
            self.report_view.clear("Now add the folder of images.")
        elif self.masks_dir is None:
            self.report_view.clear("Now add the folder of masks (same file names as the images).")
        self.changed.emit()

    def _scanned(self, worker: ScanWorker, report) -> None:
        if worker is not self._scan:
            return
        self.report = report
        self._show_report()
        self.logged.emit(report.summary(hold=self.mask_kind.meaning.hold, choose=window_choice),
                         "info" if report.pairs else "warning")
        self.changed.emit()

    def _show_report(self) -> None:
        """The report of the folders in use, their pair count in the zones, thumbnails."""
        report = self.report
        self.report_view.set_report(report)
        self.mask_kind.set_report(report)
        n = len(report.pairs)
        detail = f"{n} pair{'s' if n != 1 else ''}"
        self.images_zone.set_folder(self.images_dir, detail)
        self.masks_zone.set_folder(self.masks_dir, detail)
        if n:
            thumbs = ThumbnailWorker(report.pairs[:N_THUMBNAILS])
            thumbs.thumbnail.connect(lambda i, img, name: self._thumbnail(thumbs, i, img, name))
            self._thumbs = thumbs
            self._track(thumbs)
            thumbs.start()

    def _mask_kind_changed(self) -> None:
        """The report says what the chosen kind (as it would train) does with the masks."""
        self.report_view.set_masks_hold(self.mask_kind.meaning.hold)
        self.changed.emit()

    def _thumbnail(self, worker: ThumbnailWorker, index: int, image: QImage, name: str) -> None:
        if worker is self._thumbs:
            self.report_view.set_thumbnail(index, image, name)

    def _scan_failed(self, worker: ScanWorker, message: str, details: str) -> None:
        """The folder is not taken: the folders in use, their report and pair count
        stay as they were, and the report box alone says why (the log and the status
        bar echo one short line)."""
        if worker is not self._scan:
            return
        if self.report is not None:
            self._show_report()
        elif self.images_dir is None:
            self.report_view.clear("Now add the folder of images." if self.masks_dir else "")
        elif self.masks_dir is None:
            self.report_view.clear("Now add the folder of masks (same file names as the images).")
        else:
            self.report_view.clear("These folders cannot be used.")
        self.report_view.set_notice(message)
        self.report_view.notice.setToolTip(details)
        what = f"The folder {worker.folder.name or worker.folder}" if worker.folder else "These folders"
        self.logged.emit(f"{what} cannot be used (see the Data box).", "warning")
        self.failed.emit(message, details)
        self.changed.emit()

    # -- shutting down -----------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel and wait for the scanning and thumbnail threads."""
        for worker in list(self._workers):
            worker.cancel()
        for worker in list(self._workers):
            worker.wait()
