"""Object-level scores: matching labelled objects by IoU, F1 and the DSB 2018 average precision.

A predicted object matches a true object when their IoU is at least the threshold;
each object matches at most one other (at thresholds of 0.5 and above two objects
can share a partner only in ties, which the assignment settles by the larger IoU).
Matched pairs are true positives, unmatched predictions false positives, unmatched
true objects false negatives.

The average precision of the 2018 Data Science Bowl is, per image, the mean over the
thresholds 0.5, 0.55, ..., 0.95 of TP / (TP + FP + FN); the set's figure is the mean
over images. An image with no object on either side scores 1 (nothing to find and
nothing found). Precision, recall and F1 at IoU 0.5 are pooled: counts summed over
the images first.

Torch-free; scipy (a dependency of scikit-image) is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The DSB 2018 thresholds: 0.5 to 0.95 in steps of 0.05.
THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
F1_THRESHOLD = 0.5


def _consecutive(labels: np.ndarray) -> tuple[np.ndarray, int]:
    from skimage.segmentation import relabel_sequential

    labels = np.asarray(labels)
    if labels.min(initial=0) < 0:
        raise ValueError("object labels must not be negative")
    relabelled = relabel_sequential(labels.astype(np.int64, copy=False))[0]
    return relabelled, int(relabelled.max(initial=0))


def iou_matrix(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(n_true, n_pred) IoU of every true object with every predicted object, from two
    (H, W) label images (0 background; any ids, renumbered here). One bincount of the
    joint labels gives every intersection at once."""
    true, nt = _consecutive(true)
    pred, np_ = _consecutive(pred)
    if true.shape != pred.shape:
        raise ValueError(f"true {true.shape} and predicted {pred.shape} labels differ in size")
    joint = np.bincount((true * (np_ + 1) + pred).ravel(), minlength=(nt + 1) * (np_ + 1))
    joint = joint.reshape(nt + 1, np_ + 1)
    area_true, area_pred = joint.sum(axis=1), joint.sum(axis=0)
    inter = joint[1:, 1:].astype(np.float64)
    union = area_true[1:, None] + area_pred[None, 1:] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def matches(iou: np.ndarray, threshold: float) -> int:
    """Number of one-to-one matched pairs with IoU >= ``threshold``."""
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return 0
    eligible = iou >= threshold
    if not eligible.any():
        return 0
    # most pairs first, then the larger IoU among ties
    score = eligible.astype(np.float64) + np.where(eligible, iou, 0.0) / (2 * max(iou.shape))
    rows, cols = linear_sum_assignment(score, maximize=True)
    return int(eligible[rows, cols].sum())


@dataclass
class ImageObjects:
    """The object scores of one image."""

    true_objects: int
    predicted_objects: int
    tp: tuple[int, ...]  # true positives at each of THRESHOLDS

    def at(self, threshold: float) -> tuple[int, int, int]:
        """(TP, FP, FN) at one of :data:`THRESHOLDS`."""
        tp = self.tp[THRESHOLDS.index(threshold)]
        return tp, self.predicted_objects - tp, self.true_objects - tp

    @property
    def precision_per_threshold(self) -> list[float]:
        """TP / (TP + FP + FN) at each threshold (1 for an image empty on both sides)."""
        out = []
        for t in THRESHOLDS:
            tp, fp, fn = self.at(t)
            out.append(1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn))
        return out

    @property
    def average_precision(self) -> float:
        return float(np.mean(self.precision_per_threshold))

    @property
    def f1(self) -> float:
        tp, fp, fn = self.at(F1_THRESHOLD)
        return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def score_image(true: np.ndarray, pred: np.ndarray) -> ImageObjects:
    """Object scores of predicted labels against true labels of one image."""
    iou = iou_matrix(true, pred)
    return ImageObjects(iou.shape[0], iou.shape[1], tuple(matches(iou, t) for t in THRESHOLDS))


def _ratio(a: int, b: int) -> float:
    return 1.0 if b == 0 else a / b


@dataclass
class ObjectScores:
    """Accumulates object scores over a set of images."""

    images: list[ImageObjects] = field(default_factory=list)

    def add(self, true: np.ndarray, pred: np.ndarray) -> ImageObjects:
        scored = score_image(true, pred)
        self.images.append(scored)
        return scored

    def summary(self) -> dict:
        """Pooled precision, recall, F1 at IoU 0.5, their counts, and the mean over
        images of the DSB average precision (and of its value at each threshold)."""
        if not self.images:
            return {"images": 0, "precision": None, "recall": None, "f1": None, "ap": None,
                    "tp": 0, "fp": 0, "fn": 0, "true_objects": 0, "predicted_objects": 0,
                    "ap_per_threshold": {}}
        tp, fp, fn = (sum(s.at(F1_THRESHOLD)[k] for s in self.images) for k in range(3))
        per_t = np.mean([s.precision_per_threshold for s in self.images], axis=0)
        return {
            "images": len(self.images),
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "ap": float(np.mean([s.average_precision for s in self.images])),
            "tp": tp, "fp": fp, "fn": fn,
            "true_objects": sum(s.true_objects for s in self.images),
            "predicted_objects": sum(s.predicted_objects for s in self.images),
            "ap_per_threshold": {f"{t:.2f}": float(v) for t, v in zip(THRESHOLDS, per_t,
                                                                      strict=True)},
        }
