"""Inference: one image, or a whole folder, with a base model and optional adapter.

Images are normalised exactly as at training (the preprocessing stored in the
model file). Any size works: images larger than a tile are predicted in
overlapping tiles blended without seams, in bounded memory (:mod:`.tiling`), and
very large ones are read a band of rows at a time (:mod:`.bands`).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_write
from .bands import ImageBands, load_image
from .devices import resolve_device
from .errors import DataError
from .events import ProgressEvent
from .folders import list_images
from .imageio import UnreadableFileError, read_image
from .maskkinds import MaskMeaning, meaning_of, palette_bytes
from .outputs import PREDICTIONS, Input, check_output, mark
from .preprocessing import Preprocessing
from .tiling import predict_logits, predict_mask, tiled
from .unet import UNet


def predict_probability(model: UNet, image: np.ndarray, device: torch.device | str = "cpu",
                        *, logits: bool = False) -> torch.Tensor:
    """Foreground probability (or logits) (H, W) on the CPU for one (H, W, C) uint8 image,
    held at full size (:func:`.tiling.predict_mask` writes the mask of any size)."""
    out = torch.from_numpy(predict_logits(model, image, torch.device(device)))
    return out if logits else torch.sigmoid(out)


def predict_classes(model: UNet, image: np.ndarray,
                    device: torch.device | str = "cpu") -> np.ndarray:
    """Class probabilities (K, H, W) float32 (softmax over the K channels of a K-class
    model) for one (H, W, C) uint8 image, held at full size."""
    logits = torch.from_numpy(predict_logits(model, image, torch.device(device)))
    if logits.ndim != 3:
        raise ValueError("predict_classes needs a model of several classes; "
                         "predict_probability serves a foreground/background one")
    return torch.softmax(logits, dim=0).numpy()


def load_for_inference(base: str | Path | None, adapter: str | Path | None, *,
                       force: bool = False) -> tuple[UNet, Preprocessing, list[str]]:
    """A plain model (adapter merged in) and its preprocessing."""
    model, prep, warnings, _ = load_with_meaning(base, adapter, force=force)
    return model, prep, warnings


def load_with_meaning(base: str | Path | None, adapter: str | Path | None, *,
                      force: bool = False) -> tuple[UNet, Preprocessing, list[str], MaskMeaning]:
    """:func:`load_for_inference` plus what the model's masks hold (class names, colours)."""
    from .basemodel import load_model, resolve_base
    from .exports import merged_model

    section = None
    if adapter:
        model, info, ad, warnings = merged_model(base, adapter, force=force)
        section = ad.loragui
    else:
        model, info = load_model(resolve_base(base))
        warnings = []
    meaning = meaning_of(model.config.out_channels, section, info.metadata)
    return model, Preprocessing.from_dict(info.preprocessing), warnings, meaning


def predict_folder(images_dir: str | Path, out_dir: str | Path, *, base: str | Path | None = None,
                   adapter: str | Path | None = None, device: str = "auto",
                   stop: threading.Event | None = None, threshold: float = 0.5,
                   force: bool = False, overwrite: bool = False, objects: bool = False,
                   min_size: int = 0) -> Iterator[ProgressEvent]:
    """Write one 0/255 PNG mask per image (same stem, original size) into ``out_dir``,
    a new or empty folder, or (``overwrite``) one that holds loragui's earlier masks
    (see :mod:`.outputs`). A model of K classes writes palette PNGs instead: index =
    class, the palette = the class colours.

    ``objects``: also split each mask into objects (connected components of at least
    ``min_size`` pixels; an objects model's masks always, by its boundary class) and write their labels into ``out_dir/objects/`` under the
    mask's name (16-bit PNG), one row per object into ``objects.csv`` and the count
    per image into ``counts.csv`` (:mod:`.objects`); the tables cover the images done
    when a stop comes."""
    if min_size < 0:
        raise DataError(f"the minimum object size must be 0 or more pixels, not {min_size}")
    files = list_images(images_dir)
    out = check_output(out_dir, PREDICTIONS, [Input("the images folder", images_dir, nest_ok=True),
                                              Input("--base", base), Input("--adapter", adapter)],
                       overwrite=overwrite)
    model, prep, warnings, meaning = load_with_meaning(base, adapter, force=force)
    dev = resolve_device(device)
    model.to(dev).eval()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the folder {out} ({exc.strerror or exc}); choose "
                        "another folder for the masks") from None
    mark(out, PREDICTIONS)
    objects_model = meaning.hold == "objects"  # its masks are objects: always split them
    tables = ObjectTables(out) if objects or objects_model else None
    for w in warnings:
        yield ProgressEvent(0, len(files), w)
    failed = []
    stems = [p.stem.casefold() for p in files]
    for i, path in enumerate(files):
        if stop is not None and stop.is_set():
            yield from _stopped(i, len(files), tables)
            return
        try:
            image = load_image(path, prep)
        except DataError as exc:
            failed.append(path.name)
            yield ProgressEvent(i + 1, len(files), f"skipped: {exc}")
            continue
        try:
            steps = tiled(model, image, dev, threshold=threshold)
            while True:  # a large image: an event per tile, and a stop between two tiles
                try:
                    tile, tiles = next(steps)
                except StopIteration as finished:
                    prediction = finished.value
                    break
                if tiles > 1:
                    yield ProgressEvent(i, len(files), f"{path.name}: tile {tile} of {tiles}",
                                        tile=tile, tiles=tiles)
                    if stop is not None and stop.is_set():
                        yield from _stopped(i, len(files), tables)
                        return
        except UnreadableFileError as exc:  # a band of a large image failed to decode
            failed.append(path.name)
            yield ProgressEvent(i + 1, len(files), f"skipped: {exc}")
            continue
        del steps
        mask = Image.fromarray(prediction)  # a view of the mask: putpalette and save copy none
        if meaning.k > 1:
            mask.putpalette(palette_bytes(meaning))
        # two images with one stem (a.tif, a.jpg) must not overwrite each other's mask
        name = path.stem if stems.count(path.stem.casefold()) == 1 else \
            f"{path.stem}_{path.suffix.lstrip('.').lower()}"
        atomic_write(out / f"{name}.png", lambda tmp, m=mask: m.save(tmp, format="PNG"))
        if tables is not None:
            # The objects' mean intensities (scikit-image's regionprops) need the whole
            # image, so a large one is read in full for them, in this case only.
            whole = image.whole() if isinstance(image, ImageBands) else image
            # an objects model's prediction: background, interior, boundary
            note = tables.add(path.name, name, prediction, whole, min_size,
                              class_map=objects_model)
            del whole
            if note:
                yield ProgressEvent(i + 1, len(files), note)
        del image
        yield ProgressEvent(i + 1, len(files), path.name)
    if tables is not None:
        tables.write()
    if failed:
        yield ProgressEvent(len(files), len(files),
                            f"warning: {len(failed)} image(s) could not be read: "
                            f"{', '.join(failed[:5])}")


class ObjectTables:
    """The objects of a prediction folder: label files as each image is done, the
    tables at the end (see :mod:`.objects`)."""

    def __init__(self, out: Path) -> None:
        from .objects import LABELS_DIR

        self.out, self.labels_dir = out, out / LABELS_DIR
        self.objects: list[dict] = []
        self.counts: list[dict] = []
        try:
            self.labels_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create the folder {self.labels_dir} "
                            f"({exc.strerror or exc}); choose another folder") from None

    def add(self, image_name: str, name: str, prediction: np.ndarray, image: np.ndarray,
            min_size: int, *, class_map: bool = False) -> str:
        """Split one prediction into objects (``class_map``: an objects model's predicted
        classes, :func:`.objects.labels_from_class_map`; else its non-zero pixels are the
        foreground), write their labels, keep their rows; a note for the user when the
        labels need a 32-bit TIFF."""
        from .objects import (
            PNG_MAX_ID,
            count,
            labels_from_class_map,
            labels_from_foreground,
            measure,
            write_labels,
        )

        labels = labels_from_class_map(prediction, min_size) if class_map else \
            labels_from_foreground(prediction > 0, min_size)
        path = write_labels(self.labels_dir, name, labels)
        self.objects += measure(labels, image, image_name)
        self.counts.append({"image": image_name, "objects": count(labels)})
        if count(labels) > PNG_MAX_ID:
            return (f"{image_name}: {count(labels)} objects are more than a 16-bit PNG holds "
                    f"({PNG_MAX_ID}); their labels are in the 32-bit TIFF {path.name}")
        return ""

    def write(self) -> None:
        from .objects import write_tables

        write_tables(self.out, self.objects, self.counts)


def _stopped(done: int, total: int, tables: ObjectTables | None) -> Iterator[ProgressEvent]:
    if tables is not None:
        tables.write()
    yield ProgressEvent(done, total, "stopped")


def evaluate_folders(images_dir: str | Path, masks_dir: str | Path | None, *,
                     base: str | Path | None = None, adapter: str | Path | None = None,
                     device: str = "auto", force: bool = False,
                     stems: Collection[str] | None = None,
                     corrections: str | Path | None = None, objects: bool = False) -> dict:
    """Dice and IoU (mean per image and pooled) of a model on an image/mask folder pair,
    and one row per image (``per_image``); for a model of K classes also per class, with
    the confusion matrix (:mod:`.class_eval`). ``stems``: score only these pairs (a run's
    validation set); a stem that is not among the pairs is an error. ``corrections``:
    corrected masks that replace those of the same name (as training pairs them).

    ``objects``: also score objects (``result["objects"]``, see :mod:`.object_metrics`,
    and object columns per image): the true objects are the masks' label values (a
    binary mask's connected components), the predicted ones the components of the
    predicted mask."""
    from .masks import read_mask
    from .metrics import SegmentationScores
    from .object_metrics import ObjectScores
    from .objects import count, labels_of_prediction, mask_objects
    from .pairing import pair_folders

    report = pair_folders(images_dir, masks_dir, corrections=corrections)
    if not report.ok:
        raise DataError("no image/mask pairs to evaluate on.\n" + report.summary())
    pairs = report.pairs
    if stems is not None:
        by_stem = {p.stem: p for p in pairs}
        missing = [s for s in stems if s not in by_stem]
        if missing:
            raise DataError(f"{len(missing)} of the {len(stems)} validation image(s) are no "
                            f"longer paired in {images_dir} and {report.masks_dir} "
                            f"({', '.join(missing[:5])}): restore them, or evaluate the folders "
                            "with --images and --masks")
        pairs = [by_stem[s] for s in stems]
    model, prep, warnings, meaning = load_with_meaning(base, adapter, force=force)
    dev = resolve_device(device)
    model.to(dev).eval()
    if meaning.k > 1:  # per class, with a confusion matrix
        from .class_eval import evaluate_classes

        result = evaluate_classes(pairs, model, prep, meaning, dev, report.masks_dir)
        if objects or meaning.hold == "objects":
            object_scores = ObjectScores()
            for pair in pairs:
                probs = predict_classes(model, read_image(pair.image, prep, exif=pair.exif), dev)
                object_scores.add(mask_objects(pair.mask), labels_of_prediction(
                    probs if meaning.hold == "objects" else probs[0] < 0.5))
            result["objects"] = object_scores.summary()
        result["warnings"] = warnings
        result["skipped"] = len(report.images_without_masks) + len(report.unreadable) + \
            len(report.size_mismatch)
        return result
    scores = SegmentationScores()
    object_scores = ObjectScores()
    rows = []
    for pair in pairs:
        pred = predict_mask(model, read_image(pair.image, prep, exif=pair.exif), dev) > 0
        mask, _ = read_mask(pair.mask)
        scores.add(pred, mask)
        rows.append({"stem": pair.stem, "image": pair.image.name, "mask": pair.mask.name,
                     "dice": scores.dice_per_image[-1], "iou": scores.iou_per_image[-1],
                     "true_pixels": int(np.count_nonzero(mask)),
                     "predicted_pixels": int(np.count_nonzero(pred))})
        if objects:
            true_labels, pred_labels = mask_objects(pair.mask), labels_of_prediction(pred)
            scored = object_scores.add(true_labels, pred_labels)
            rows[-1].update(true_objects=count(true_labels), predicted_objects=count(pred_labels),
                            object_f1=scored.f1, object_ap=scored.average_precision)
    result = scores.summary()
    if objects:
        result["objects"] = object_scores.summary()
    result["warnings"] = warnings
    result["skipped"] = len(report.images_without_masks) + len(report.unreadable) + len(report.size_mismatch)
    result["per_image"] = rows
    return result
