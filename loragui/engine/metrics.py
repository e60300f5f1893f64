"""Dice and IoU for binary masks, and the training losses (binary and K classes).

"Mean" metrics average a score per image (each image counts the same);
"pooled" metrics sum intersections and unions over the whole set first (big
images count more). An image whose ground truth and prediction are both empty
scores 1: predicting nothing where there is nothing is right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """BCE + soft Dice (per image, averaged). logits, target: (B, 1, H, W)."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits)
    dims = tuple(range(1, prob.ndim))
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    dice = (2 * inter + smooth) / (denom + smooth)
    return bce + (1 - dice).mean()


def class_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Cross-entropy + multi-class soft Dice over the foreground classes (per image and
    class, averaged). logits: (B, K, H, W); target: (B, 1, H, W) class indices (float).

    Background is left out of the Dice, as of the validation's mean: it covers most
    pixels and would score high whatever the classes do. A class absent from an image
    and not predicted there scores about 1 through ``smooth``.
    """
    logits = logits.float()
    labels = target[:, 0].long()
    ce = F.cross_entropy(logits, labels)
    prob = torch.softmax(logits, dim=1)[:, 1:]
    onehot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(prob.dtype)
    inter = (prob * onehot).sum((2, 3))
    denom = prob.sum((2, 3)) + onehot.sum((2, 3))
    dice = (2 * inter + smooth) / (denom + smooth)
    return ce + (1 - dice).mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training loss for a model's logits: :func:`dice_bce_loss` for one channel
    (foreground/background), :func:`class_loss` for several (classes, objects)."""
    if logits.shape[1] == 1:
        return dice_bce_loss(logits, target)
    return class_loss(logits, target)


@dataclass
class SegmentationScores:
    """Accumulates per-image and pooled Dice/IoU over a validation set."""

    dice_per_image: list[float] = field(default_factory=list)
    iou_per_image: list[float] = field(default_factory=list)
    intersection: int = 0
    pred_sum: int = 0
    true_sum: int = 0
    union: int = 0

    def add(self, pred: np.ndarray, true: np.ndarray) -> None:
        pred = np.asarray(pred, dtype=bool)
        true = np.asarray(true, dtype=bool)
        inter = int(np.logical_and(pred, true).sum())
        p, t = int(pred.sum()), int(true.sum())
        union = p + t - inter
        self.dice_per_image.append(1.0 if p + t == 0 else 2 * inter / (p + t))
        self.iou_per_image.append(1.0 if union == 0 else inter / union)
        self.intersection += inter
        self.pred_sum += p
        self.true_sum += t
        self.union += union

    @property
    def count(self) -> int:
        return len(self.dice_per_image)

    def summary(self) -> dict[str, float | None]:
        if not self.count:
            return {"dice": None, "iou": None, "dice_pooled": None, "iou_pooled": None, "images": 0}
        total = self.pred_sum + self.true_sum
        return {
            "dice": float(np.mean(self.dice_per_image)),
            "iou": float(np.mean(self.iou_per_image)),
            "dice_pooled": 1.0 if total == 0 else 2 * self.intersection / total,
            "iou_pooled": 1.0 if self.union == 0 else self.intersection / self.union,
            "images": self.count,
        }
