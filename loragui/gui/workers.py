"""Background jobs: every slow thing the window does runs in one of these threads.

Each job is a ``QThread`` subclass with a few typed signals; ``run()`` catches
everything and reports it (labelme's habit), so a failing job can never take the
window down. ``cancel()`` asks a job to stop: it sets a ``threading.Event`` the
engine checks between steps and requests Qt interruption. Engine modules (and so
torch) are imported inside ``run()``, never on the GUI thread. Once a job exists,
reference cycles are collected on the GUI thread only (``collector.py``).

Training events are not sent as signals: the worker puts them on a queue that a
timer on the GUI thread drains a few times a second (see ``training.py``), so a
fast GPU producing hundreds of steps a second cannot flood the event loop. The
training itself runs in a child process (``child.py``).
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QThread, Signal
from PySide6.QtGui import QImage

from .collector import collect_on_gui_thread

_KEEP_ASPECT = Qt.AspectRatioMode.KeepAspectRatio
_SMOOTH = Qt.TransformationMode.SmoothTransformation

def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(message for a person, technical details) for any exception."""
    from loragui.engine.errors import LoraGuiError

    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, LoraGuiError):
        return str(exc), details
    return f"Unexpected error: {type(exc).__name__}: {exc}", details


class Worker(QThread):
    """A job thread that can be cancelled."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        collect_on_gui_thread()  # a cycle freed in this thread must not hold Qt objects
        self.stop_event = threading.Event()

    def cancel(self) -> None:
        self.stop_event.set()
        self.requestInterruption()

    def cancelled(self) -> bool:
        return self.stop_event.is_set() or self.isInterruptionRequested()


class CallWorker(Worker):
    """Run one function off the GUI thread: ``succeeded(result)`` or ``failed(message, details)``.

    With ``warnings=True`` the function is also given ``on_warning=``, whose messages
    arrive as ``warned(message)`` signals (on the GUI thread, before ``succeeded``)."""

    succeeded = Signal(object)
    failed = Signal(str, str)
    warned = Signal(str)

    def __init__(self, fn: Callable[..., Any], *args: Any, parent=None, warnings: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(parent)
        if warnings:
            kwargs["on_warning"] = self.warned.emit
        self._call = (fn, args, kwargs)

    def run(self) -> None:
        fn, args, kwargs = self._call
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported, never lost
            self.failed.emit(*describe_exception(exc))
        else:
            self.succeeded.emit(result)


class TrainWorker(Worker):
    """Iterate ``run_training`` in this process and put every event on ``events``
    (the tests' fake runs; the window trains in a child process: ``child.py``).

    The last event put is always a ``RunFinished`` or ``RunFailed``: exceptions
    escaping the engine are turned into ``RunFailed`` with the traceback as details.
    """

    def __init__(self, config, events: queue.SimpleQueue | None = None,
                 run_training: Callable[..., Iterator] | None = None, parent=None) -> None:
        super().__init__(parent)
        self.config = config
        self.events: queue.SimpleQueue = events if events is not None else queue.SimpleQueue()
        self._run_training = run_training  # injectable for tests
        self.last_step = 0  # the newest step reported by the engine

    def run(self) -> None:
        from loragui.engine.events import EpochEvent, RunFailed, RunFinished, StepEvent

        from .history import put_earlier

        terminal = False
        try:
            run_training = self._run_training
            if run_training is None:
                from loragui.engine.train import run_training
            for event in run_training(self.config, self.stop_event):
                if isinstance(event, EpochEvent) and event.previews:
                    event = add_overlays(event)
                if isinstance(event, StepEvent | EpochEvent):
                    self.last_step = event.step
                self.events.put(event)
                put_earlier(event, self.config, self.events)  # a resumed run's past
                terminal = isinstance(event, RunFinished | RunFailed)
                if terminal:
                    break
        except BaseException as exc:  # noqa: BLE001
            message, details = describe_exception(exc)
            self.events.put(RunFailed(message, details, run_dir=self.config.out or None))
            terminal = True
        if not terminal:
            self.events.put(RunFailed("Training ended without reporting a result.",
                                      run_dir=self.config.out or None))


class ScanWorker(Worker):
    """Resolve a dropped folder and pair images with masks.

    ``target`` is "images", "masks" or "both" (the folder may hold images/ and
    masks/ subfolders, which then fill both). A folder that cannot be used gives
    ``failed(message, details)`` and changes nothing. Otherwise ``resolved(images,
    masks)`` ("" for a folder not known yet) and, once both folders are known and
    paired, ``succeeded(report)``; ``progress(done, total, "")`` while pairing.
    """

    resolved = Signal(str, str)
    progress = Signal(int, int, str)
    succeeded = Signal(object)
    failed = Signal(str, str)

    def __init__(self, target: str, folder: Path | None, images: Path | None,
                 masks: Path | None, parent=None) -> None:
        super().__init__(parent)
        self.target, self.folder = target, folder
        self.images, self.masks = images, masks

    def run(self) -> None:
        try:
            from loragui.engine.errors import DataError
            from loragui.engine.folders import find_image_mask_dirs, list_images
            from loragui.engine.pairing import pair_folders

            images, masks = self.images, self.masks
            if self.folder is not None:
                folder = self.folder
                if not folder.exists():
                    raise DataError(f"The folder {folder} does not exist.")
                if not folder.is_dir():
                    raise DataError(f"{folder} is not a folder.")
                split = find_image_mask_dirs(folder)
                if split is not None:
                    images, masks = (Path(p) for p in split)
                elif self.target == "masks":
                    masks = folder
                else:
                    images = folder
            if images is None or masks is None:
                # Only one folder so far: check it holds images before showing it.
                list_images(images or masks, "images" if images else "masks")
                self.resolved.emit(str(images or ""), str(masks or ""))
                return
            report = pair_folders(images, masks, progress=self._progress,
                                  stop=self.stop_event)
            if not self.cancelled():
                # (the report's folders: it may pick subfolders)
                self.resolved.emit(str(report.images_dir), str(report.masks_dir))
                self.succeeded.emit(report)
        except BaseException as exc:  # noqa: BLE001
            if not self.cancelled():
                self.failed.emit(*describe_exception(exc))

    def _progress(self, done: int, total: int) -> None:
        self.progress.emit(done, total, "")


class ThumbnailWorker(Worker):
    """Decode a few pairs into small overlay thumbnails: ``thumbnail(index, image, name)``."""

    thumbnail = Signal(int, QImage, str)

    def __init__(self, pairs: list, size: int = 192, parent=None) -> None:
        super().__init__(parent)
        self.pairs, self.size = list(pairs), size

    def run(self) -> None:
        from loragui.engine.imageio import read_image
        from loragui.engine.masks import read_mask
        from loragui.engine.preprocessing import Preprocessing

        from .overlay import overlay

        for index, pair in enumerate(self.pairs):
            if self.cancelled():
                return
            try:
                image = read_image(pair.image, Preprocessing(), exif=pair.exif)
                mask, _ = read_mask(pair.mask)
                rgb = overlay(image, mask, fill_mask=0.4)
                qimage = numpy_to_qimage(rgb).scaled(
                    self.size, self.size, aspectMode=_KEEP_ASPECT, mode=_SMOOTH)
            except Exception:  # noqa: BLE001 - a broken file shows as a blank tile
                qimage = QImage()
            self.thumbnail.emit(index, qimage, pair.stem)


class PredictWorker(Worker):
    """Write masks for a folder of images with ``predict_folder``."""

    progress = Signal(int, int, str)
    succeeded = Signal(str)
    failed = Signal(str, str)

    def __init__(self, images_dir: Path, out_dir: Path, *, base: str | None,
                 adapter: str | None, device: str = "auto", overwrite: bool = False,
                 parent=None) -> None:
        super().__init__(parent)
        self.images_dir, self.out_dir = Path(images_dir), Path(out_dir)
        self.base, self.adapter, self.device = base, adapter, device
        self.overwrite = overwrite  # the user agreed to replace loragui's earlier masks
        self.written = 0  # masks written so far
        self.total = 0  # images in the folder (0: not known yet)

    def run(self) -> None:
        try:
            from loragui.engine.predict import predict_folder

            done = 0
            for event in predict_folder(self.images_dir, self.out_dir, base=self.base,
                                        adapter=self.adapter, device=self.device,
                                        stop=self.stop_event, overwrite=self.overwrite):
                # An image is written when the count moves on without a "skipped" note.
                if event.done > done and not event.message.startswith("skipped"):
                    self.written += event.done - done
                done, self.total = max(done, event.done), event.total
                self.progress.emit(event.done, event.total, event.message)
            self.succeeded.emit(str(self.out_dir))
        except BaseException as exc:  # noqa: BLE001
            self.failed.emit(*describe_exception(exc))


class StartupWorker(Worker):
    """After the first paint: import the plotting library and torch, find the
    devices and the bundled files. Each result is sent as soon as it is known."""

    plotsReady = Signal()
    devicesReady = Signal(object)  # list[DeviceInfo]
    bundledReady = Signal(object, object)  # base path | None, (images, masks) | None
    versionsReady = Signal(object)  # {"torch": "2.x", ...}
    failed = Signal(str, str)

    def run(self) -> None:
        try:
            import pyqtgraph  # noqa: F401  (0.5-0.8 s: kept off the GUI thread)

            self.plotsReady.emit()
            if self.cancelled():
                return
            from loragui.engine import devices, pairing, resources  # noqa: F401

            self.bundledReady.emit(resources.bundled_base_path(), resources.bundled_sample_dirs())
            # Import the rest now (predicting, resuming), not when first needed. Training
            # runs in a child process: this one never makes an optimizer, so torch's
            # compiler stack (~2 s holding the GIL) is never imported here.
            from loragui.engine import predict, train  # noqa: F401
            found = devices.list_devices()
            import torch

            self.versionsReady.emit({"torch": torch.__version__})
            self.devicesReady.emit(found)
            from PIL import Image

            Image.init()
        except BaseException as exc:  # noqa: BLE001
            self.failed.emit(*describe_exception(exc))


def add_overlays(event):
    """The epoch's event with its preview overlays drawn here, in the worker, not on the
    GUI thread (an :class:`~loragui.gui.overlay.EpochWithOverlays`)."""
    from .overlay import with_overlays

    return with_overlays(event)


def numpy_to_qimage(rgb) -> QImage:
    """A deep-copied QImage from an (H, W, 3) uint8 array (safe off the GUI thread)."""
    import numpy as np

    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = a.shape[:2]
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()

