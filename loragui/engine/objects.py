"""Objects: labelled objects from a prediction, their measurements, their label files.

A binary model's foreground is split into connected components. An objects model
predicts three channels (0 background, 1 object interior, 2 boundary: an object's
pixels that touch another object or the background); its objects are the connected
components of the interior, grown back over the whole foreground (interior plus
boundary) by a watershed on the boundary probability, so that two touching objects
stay two. Labels are int32 in memory, 0 is background, objects are numbered 1..n
in the order scikit-image finds them (row by row).

Torch-free; scikit-image is imported inside the functions that use it, so that the
engine stays importable where it is missing.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

# The per-object measurements, as the columns of objects.csv. The bounding box is
# min inclusive, max exclusive (numpy's slices: labels[min_y:max_y, min_x:max_x]).
OBJECT_COLUMNS = ("image", "object", "class", "area", "centroid_y", "centroid_x",
                  "bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x", "mean_intensity")
COUNT_COLUMNS = ("image", "objects")
# Channels of an objects model's output.
BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
# A 16-bit PNG holds ids up to this; more objects go to a 32-bit TIFF.
PNG_MAX_ID = 65535
# What a prediction folder holds for objects (outputs.py counts them as loragui's):
# the tables, and a folder of label files named like the masks beside them.
OBJECTS_CSV = "objects.csv"
COUNTS_CSV = "counts.csv"
LABELS_DIR = "objects"


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Objects of fewer than ``min_size`` pixels removed, the rest renumbered 1..n."""
    from skimage.segmentation import relabel_sequential

    if min_size > 1 and labels.max() > 0:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    return relabel_sequential(labels.astype(np.int32, copy=False))[0].astype(np.int32, copy=False)


def labels_from_foreground(fg: np.ndarray, min_size: int = 0) -> np.ndarray:
    """(H, W) int32 labels of the connected components of a (H, W) bool foreground.

    Pixels touching by a corner belong to one object (8-connectivity): a thresholded
    mask's thin diagonal necks are parts of one object, not gaps between two.
    Objects of fewer than ``min_size`` pixels are dropped."""
    from skimage.measure import label

    labels = label(np.asarray(fg, dtype=bool), connectivity=2).astype(np.int32, copy=False)
    return _drop_small(labels, min_size)


def labels_from_classes(probs: np.ndarray, min_size: int = 0) -> np.ndarray:
    """(H, W) int32 labels from an objects model's (3, H, W) probabilities (softmax over
    background, interior, boundary).

    The markers are the connected components of the interior (argmax = interior); each
    grows over the foreground (argmax = interior or boundary) along the boundary
    probability, so that the line between two touching objects falls where the model
    sees their boundary. Foreground with no interior (a lone boundary fragment) is
    no object. Objects of fewer than ``min_size`` pixels are dropped."""
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3 or probs.shape[0] != 3:
        raise ValueError(f"expected (3, H, W) probabilities, got shape {probs.shape}")
    return _grow(probs.argmax(axis=0), probs[BOUNDARY], min_size)


def labels_from_class_map(classes: np.ndarray, min_size: int = 0) -> np.ndarray:
    """(H, W) int32 labels from an objects model's (H, W) predicted classes (what
    ``predict`` writes, in bounded memory): as :func:`labels_from_classes`, the
    interiors grown over the boundary pixels."""
    classes = np.asarray(classes)
    return _grow(classes, (classes == BOUNDARY).astype(np.uint8), min_size)


def _grow(winner: np.ndarray, elevation: np.ndarray, min_size: int) -> np.ndarray:
    from skimage.measure import label
    from skimage.segmentation import watershed

    markers = label(winner == INTERIOR, connectivity=1)  # 4-connected: a corner is no bridge
    foreground = winner != BACKGROUND
    labels = watershed(elevation, markers, mask=foreground).astype(np.int32, copy=False)
    return _drop_small(labels, min_size)


def labels_of_prediction(prediction: np.ndarray, min_size: int = 0) -> np.ndarray:
    """The objects of a model's prediction: a binary model's (H, W) bool foreground
    (:func:`labels_from_foreground`) or an objects model's (3, H, W) probabilities
    (:func:`labels_from_classes`)."""
    prediction = np.asarray(prediction)
    if prediction.ndim == 2:
        return labels_from_foreground(prediction, min_size)
    return labels_from_classes(prediction, min_size)


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W) float grey of an (H, W) or (H, W, C) image, on the image's own scale
    (0..255 for the model's uint8 input)."""
    from skimage.color import rgb2gray

    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.float64, copy=False)
    if image.shape[2] == 1:
        return image[..., 0].astype(np.float64)
    # rgb2gray maps integers to 0..1; scale back so that figures keep the image's scale
    top = float(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 1.0
    return rgb2gray(image[..., :3]) * top


def measure(labels: np.ndarray, image: np.ndarray, name: str, cls: str | int = 1) -> list[dict]:
    """One row per object of ``labels`` (columns :data:`OBJECT_COLUMNS`) for the image
    called ``name``; the mean intensity is that of ``image`` (the picture the model saw)
    in grey."""
    from skimage.measure import regionprops_table

    labels = np.asarray(labels)
    if not labels.any():
        return []
    grey = luminance(image)
    if grey.shape != labels.shape:
        raise ValueError(f"image {grey.shape} and labels {labels.shape} differ in size")
    table = regionprops_table(labels, intensity_image=grey,
                              properties=("label", "area", "centroid", "bbox", "intensity_mean"))
    rows = []
    for i in range(len(table["label"])):
        rows.append({"image": name, "object": int(table["label"][i]), "class": cls,
                     "area": int(table["area"][i]),
                     "centroid_y": float(table["centroid-0"][i]),
                     "centroid_x": float(table["centroid-1"][i]),
                     "bbox_min_y": int(table["bbox-0"][i]), "bbox_min_x": int(table["bbox-1"][i]),
                     "bbox_max_y": int(table["bbox-2"][i]), "bbox_max_x": int(table["bbox-3"][i]),
                     "mean_intensity": float(table["intensity_mean"][i])})
    return rows


def count(labels: np.ndarray) -> int:
    """Number of objects in consecutive labels."""
    return int(np.asarray(labels).max(initial=0))


def label_file_name(name: str, labels: np.ndarray) -> str:
    """``name.png`` (16-bit), or ``name.tif`` (32-bit) when ids exceed 65535."""
    return f"{name}.png" if count(labels) <= PNG_MAX_ID else f"{name}.tif"


def write_labels(folder: Path, name: str, labels: np.ndarray) -> Path:
    """Write ``labels`` atomically as ``folder/name.png`` (16-bit grey: the value is the
    object id) or, with more than 65535 objects, as a 32-bit ``name.tif``; the path
    written."""
    from PIL import Image

    from .atomic import atomic_write

    dest = Path(folder) / label_file_name(name, labels)
    if dest.suffix == ".png":
        picture = Image.fromarray(np.asarray(labels, dtype=np.uint16))
        atomic_write(dest, lambda tmp: picture.save(tmp, format="PNG"))
    else:
        picture = Image.fromarray(np.asarray(labels, dtype=np.int32))
        atomic_write(dest, lambda tmp: picture.save(tmp, format="TIFF", compression="tiff_deflate"))
    return dest


def _csv_text(columns: tuple[str, ...], rows: Iterable[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.3f}" if isinstance(row[k], float) else row[k])
                         for k in columns})
    return buf.getvalue()


def write_tables(folder: Path, objects: list[dict], counts: list[dict]) -> tuple[Path, Path]:
    """Write ``objects.csv`` (one row per object) and ``counts.csv`` (one row per image)
    atomically into ``folder``."""
    from .atomic import atomic_write_text

    paths = Path(folder) / OBJECTS_CSV, Path(folder) / COUNTS_CSV
    atomic_write_text(paths[0], _csv_text(OBJECT_COLUMNS, objects))
    atomic_write_text(paths[1], _csv_text(COUNT_COLUMNS, counts))
    return paths


def mask_objects(path: str | Path) -> np.ndarray:
    """(H, W) int32 labels of the objects a mask file holds: its label values (any ids,
    renumbered 1..n), or, for a mask of one foreground value (a binary mask) or a lossy
    one (JPEG noise makes its values meaningless), the connected components of its
    foreground."""
    from skimage.segmentation import relabel_sequential

    from .masks import inspect_mask, read_mask_values

    info = inspect_mask(path)
    if info.lossy or info.n_values <= 2:
        return labels_from_foreground(info.mask)
    values = read_mask_values(path)
    return relabel_sequential(np.where(values > 0, values, 0))[0].astype(np.int32, copy=False)
