"""Off the GUI thread: the images at full resolution for the canvas, and the model's
prediction for each, the current image first and a few ahead in list order.

A :class:`FetchWorker` thread works through a list of wanted stems that the GUI
thread replaces whenever the current image changes, so the image being looked at
is always the next one computed. Predictions are kept per (model identity, stem):
a new adapter (or a rewritten one: its identity holds the file's size and time)
drops them all and starts a new worker with the new model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from ..workers import Worker, describe_exception
from .items import ReviewItem

AHEAD = 3  # images predicted after the current one before the rest of the list
PICTURES_KEPT = 8  # decoded full-resolution images kept for flipping back and forth
PREDICTION_BYTES = 512 * 2**20  # predictions kept (uint8 probabilities) at most


class FetchWorker(Worker):
    """Computes ``fn(key)`` for the keys of :meth:`want`, first to last, each once:
    ``done(key, result)`` or ``failed(key, message, details)``, on the GUI thread. The
    thread ends when nothing is wanted; :meth:`want` starts it again (on the GUI thread)."""

    done = Signal(str, object)
    failed = Signal(str, str, str)
    _computed = Signal(str, object)  # from the thread; re-emitted as done
    _raised = Signal(str, str, str)  # from the thread; re-emitted as failed

    def __init__(self, fn: Callable[[str], Any], parent=None) -> None:
        super().__init__(parent)
        self._fn = fn
        self._wanted: list[str] = []
        # Keys taken by the thread whose result the GUI thread has not had yet: a new
        # wanted list (the user moved on meanwhile) leaves them out.
        self._on_the_way: set[str] = set()
        self._lock = threading.Lock()
        self._computed.connect(self._deliver)
        self._raised.connect(self._deliver_failure)
        self.finished.connect(self._resume)  # work wanted while the thread was ending

    def want(self, keys: Sequence[str]) -> None:
        with self._lock:
            self._wanted = [k for k in keys if k not in self._on_the_way]
        self._resume()

    def _resume(self) -> None:
        if self._wanted and not self.isRunning() and not self.cancelled():
            self.start()

    def _received(self, key: str) -> bool:
        with self._lock:
            self._on_the_way.discard(key)
        return not self.cancelled()

    def _deliver(self, key: str, result: object) -> None:
        if self._received(key):
            self.done.emit(key, result)

    def _deliver_failure(self, key: str, message: str, details: str) -> None:
        if self._received(key):
            self.failed.emit(key, message, details)

    def run(self) -> None:
        while not self.cancelled():
            with self._lock:
                if not self._wanted:
                    return
                key = self._wanted.pop(0)
                self._on_the_way.add(key)
            try:
                result = self._fn(key)
            except BaseException as exc:  # noqa: BLE001 - reported, never lost
                self._raised.emit(key, *describe_exception(exc))
            else:
                self._computed.emit(key, result)


def model_identity(base: str | None, adapter: str | None) -> tuple:
    """What tells one model from another: the files' paths, sizes and times."""
    def stamp(path: str | None) -> tuple:
        if not path:
            return (None,)
        p = Path(path)
        files = sorted(p.iterdir()) if p.is_dir() else [p]
        stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
        return (str(p.resolve()), tuple(stats))

    return stamp(base), stamp(adapter)


@dataclass
class Picture:
    """An image for the canvas (as decoded for display) and its mask file's pixels."""

    image: np.ndarray  # (H, W, C) uint8
    mask: np.ndarray | None  # (H, W) bool
    # The mask's ids, (H, W) int32 (for a mask of more than one value): the view maps
    # them to the classes of a model of several to colour and edit each.
    ids: np.ndarray | None = None


@dataclass
class Prediction:
    probability: np.ndarray  # (H, W) uint8, 255 = certain foreground
    dice: float | None  # against the mask file (the view rescores edited masks)
    # A model of several classes: the predicted class of each pixel, (H, W) uint8, and
    # the model's MaskMeaning (names, colours: index = class); foreground is every
    # class but the background (0).
    classes: np.ndarray | None = None
    meaning: Any = None

    def mask(self) -> np.ndarray:
        if self.classes is not None:
            return self.classes > 0
        return self.probability >= 128


def read_picture(item: ReviewItem) -> Picture:
    from loragui.engine.imageio import read_image
    from loragui.engine.masks import read_mask, read_mask_values
    from loragui.engine.preprocessing import Preprocessing

    image = read_image(item.image, Preprocessing(), exif=item.exif)
    if not item.mask:
        return Picture(image, None)
    mask, n_values = read_mask(item.mask)
    # (Two values may be background and one class of several: 0 and 2, say.)
    return Picture(image, mask, read_mask_values(item.mask) if n_values >= 2 else None)


class ModelJob:
    """Predicts one image in the worker thread; the model is loaded at the first image
    (in that thread: loading merges the adapter, seconds for a large base)."""

    def __init__(self, base: str | None, adapter: str | None, device: str) -> None:
        self.base, self.adapter, self.device = base, adapter, device
        self._loaded = None
        self.warnings: list[str] = []

    def __call__(self, item: ReviewItem) -> Prediction:
        from loragui.engine.devices import resolve_device
        from loragui.engine.imageio import read_image
        from loragui.engine.masks import read_mask
        from loragui.engine.predict import load_with_meaning, predict_classes, predict_probability

        if self._loaded is None:
            model, prep, self.warnings, meaning = load_with_meaning(self.base, self.adapter)
            device = resolve_device(self.device)
            self._loaded = (model.to(device).eval(), prep, device, meaning)
        model, prep, device, meaning = self._loaded
        image = read_image(item.image, prep, exif=item.exif)
        if meaning.k > 1:  # the foreground is every class but the background (0)
            scores = predict_classes(model, image, device)
            probability = 1.0 - scores[0]
            prediction = Prediction(np.rint(probability * 255).astype(np.uint8), None,
                                    scores.argmax(0).astype(np.uint8), meaning)
        else:
            probability = predict_probability(model, image, device).numpy()
            prediction = Prediction(np.rint(probability * 255).astype(np.uint8), None)
        if item.mask is not None:
            prediction.dice = dice(prediction.mask(), read_mask(item.mask)[0])
        return prediction


def dice(pred: np.ndarray, mask: np.ndarray) -> float:
    """The engine's per-image Dice (:class:`~loragui.engine.metrics.SegmentationScores`)."""
    from loragui.engine.metrics import SegmentationScores

    scores = SegmentationScores()
    scores.add(np.asarray(pred) > 0, np.asarray(mask) > 0)
    return scores.dice_per_image[0]


class Predictions(QObject):
    """Pictures and predictions for the review's items.

    ``pictureReady(stem)``, ``predicted(stem)`` when one is in; ``failed(stem, message,
    details)``. :meth:`focus` says which image is shown and the list order after it.
    :meth:`shutdown` stops and waits for its threads.
    """

    pictureReady = Signal(str)
    predicted = Signal(str)
    failed = Signal(str, str, str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.items: dict[str, ReviewItem] = {}
        self.identity: tuple | None = None
        self.model: tuple[str | None, str | None, str] | None = None
        self._predictions: OrderedDict[str, Prediction] = OrderedDict()
        self._pictures: OrderedDict[str, Picture] = OrderedDict()
        self._order: list[str] = []
        self._model_worker: FetchWorker | None = None
        self._picture_worker: FetchWorker | None = None
        self._workers: set[FetchWorker] = set()
        self.computed = 0  # predictions computed with the current model (tests, benchmarks)

    # -- what to compute -------------------------------------------------------------
    def set_items(self, items: Sequence[ReviewItem]) -> None:
        self.items = {item.stem: item for item in items}
        self._predictions.clear()
        self._pictures.clear()
        self._restart_model()
        self._picture_worker = self._replace(self._picture_worker, self._read_picture,
                                             self._picture_done)

    def set_model(self, base: str | None, adapter: str | None, device: str = "auto") -> bool:
        """Predict with this model from now on; True when it differs from the last one
        (every prediction made before is dropped)."""
        identity = model_identity(base, adapter) + (device,)
        if identity == self.identity:
            return False
        self.identity, self.model = identity, (base, adapter, device)
        self._predictions.clear()
        self._restart_model()
        return True

    def focus(self, stem: str, order: Sequence[str]) -> None:
        """``stem`` is shown now; ``order`` is the list as the user sees it."""
        order = [s for s in order if s in self.items]
        at = order.index(stem) if stem in order else 0
        self._order = [stem] + order[at + 1:] + order[:at]
        if self._picture_worker is not None:
            self._picture_worker.want([s for s in self._order[:AHEAD + 1] if s not in self._pictures])
        self._want_predictions()

    def picture(self, stem: str) -> Picture | None:
        return self._pictures.get(stem)

    def prediction(self, stem: str) -> Prediction | None:
        return self._predictions.get(stem)

    def shutdown(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            worker.wait()
        self._workers.clear()
        self._model_worker = self._picture_worker = None

    # -- the workers -----------------------------------------------------------------
    def _replace(self, old: FetchWorker | None, fn, done) -> FetchWorker:
        if old is not None:
            old.cancel()  # its late results are ignored: they name the old worker
        worker = FetchWorker(fn)
        worker.done.connect(lambda stem, result: done(worker, stem, result))
        worker.failed.connect(lambda stem, m, d: self.failed.emit(stem, m, d))
        self._workers.add(worker)  # until it has ended (a cancelled one may still compute)
        worker.finished.connect(lambda: worker.cancelled() and self._workers.discard(worker))
        return worker

    def _restart_model(self) -> None:
        self.computed = 0
        if self.model is None or not self.items:
            return
        job = ModelJob(*self.model)
        self._model_worker = self._replace(self._model_worker, lambda s: job(self.items[s]),
                                           self._prediction_done)
        self._want_predictions()

    def _want_predictions(self) -> None:
        if self._model_worker is not None:
            order = self._order or list(self.items)
            self._model_worker.want([s for s in order if s not in self._predictions])

    def _read_picture(self, stem: str) -> Picture:
        return read_picture(self.items[stem])

    def _picture_done(self, worker: FetchWorker, stem: str, picture: Picture) -> None:
        if worker is not self._picture_worker:
            return
        self._pictures[stem] = picture
        while len(self._pictures) > PICTURES_KEPT:
            self._pictures.popitem(last=False)
        self.pictureReady.emit(stem)

    def _prediction_done(self, worker: FetchWorker, stem: str, prediction: Prediction) -> None:
        if worker is not self._model_worker:
            return
        self.computed += 1
        self._predictions[stem] = prediction
        kept = sum(p.probability.nbytes for p in self._predictions.values())
        while kept > PREDICTION_BYTES and len(self._predictions) > AHEAD + 1:
            _, dropped = self._predictions.popitem(last=False)
            kept -= dropped.probability.nbytes
        self.predicted.emit(stem)
