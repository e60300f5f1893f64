"""Dice and IoU per class, their mean over the foreground classes, and the confusion
matrix, for masks of class indices (0 = background).

Like :mod:`.metrics`' binary scores: "mean" figures average a score per image (an
image where a class is neither true nor predicted scores 1 for it), "pooled" ones
sum over the set first. The headline ``dice`` is the mean over the foreground
classes of each class's mean Dice: the figure the best adapter and early stopping
follow, and what the window and the runs view show as a run's Dice. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class ClassScores:
    """Accumulates per-class scores over a set of (predicted, true) class-index masks."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        k = len(self.names)
        self.confusion = np.zeros((k, k), np.int64)  # [true class, predicted class] pixels
        self.dice_per_image: list[np.ndarray] = []  # (K,) per image
        self.iou_per_image: list[np.ndarray] = []

    @property
    def count(self) -> int:
        return len(self.dice_per_image)

    def add(self, pred: np.ndarray, true: np.ndarray) -> None:
        k = len(self.names)
        pred = np.asarray(pred, np.int64).ravel()
        true = np.asarray(true, np.int64).ravel()
        confusion = np.bincount(true * k + pred, minlength=k * k).reshape(k, k)
        self.confusion += confusion
        dice, iou = _scores(confusion)
        self.dice_per_image.append(dice)
        self.iou_per_image.append(iou)

    def image_summary(self, i: int = -1) -> dict[str, float]:
        """One image's mean foreground Dice and IoU."""
        return {"dice": float(self.dice_per_image[i][1:].mean()),
                "iou": float(self.iou_per_image[i][1:].mean())}

    def summary(self) -> dict[str, Any]:
        """SegmentationScores.summary()'s keys (the means over the foreground classes),
        plus ``classes`` (name -> its figures) and ``confusion`` ([true][predicted])."""
        if not self.count:
            return {"dice": None, "iou": None, "dice_pooled": None, "iou_pooled": None,
                    "images": 0, "classes": {}, "confusion": self.confusion.tolist()}
        dice = np.mean(self.dice_per_image, axis=0)
        iou = np.mean(self.iou_per_image, axis=0)
        dice_pooled, iou_pooled = _scores(self.confusion)
        classes = {name: {"dice": float(dice[c]), "iou": float(iou[c]),
                          "dice_pooled": float(dice_pooled[c]),
                          "iou_pooled": float(iou_pooled[c]),
                          "true_pixels": int(self.confusion[c].sum()),
                          "predicted_pixels": int(self.confusion[:, c].sum())}
                   for c, name in enumerate(self.names)}
        return {"dice": float(dice[1:].mean()), "iou": float(iou[1:].mean()),
                "dice_pooled": float(dice_pooled[1:].mean()),
                "iou_pooled": float(iou_pooled[1:].mean()), "images": self.count,
                "classes": classes, "confusion": self.confusion.tolist()}


def _scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Dice and IoU of a confusion matrix (1 where a class is nowhere)."""
    inter = np.diag(confusion).astype(np.float64)
    true, pred = confusion.sum(axis=1), confusion.sum(axis=0)
    total = true + pred
    union = total - inter
    dice = np.where(total == 0, 1.0, 2 * inter / np.maximum(total, 1))
    iou = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return dice, iou


def class_column(name: str, figure: str = "dice") -> str:
    """The metrics.csv column of class ``name``'s ``figure``: dice_NAME, iou_NAME."""
    return f"{figure}_{name}"


def class_columns(summary: dict[str, Any]) -> dict[str, float]:
    """A validation's per-class figures as metrics.csv columns (:func:`class_column`)."""
    out = {}
    for name, figures in summary.get("classes", {}).items():
        out[class_column(name)] = figures["dice"]
        out[class_column(name, "iou")] = figures["iou"]
    return out
