"""Fixtures for object tests: disc images with known objects, and a model that thresholds.

The "threshold" base model is a UNet whose weights pass the first input channel
straight through (centre taps of 1, all else 0) and whose head subtracts 0.5: its
mask is exactly "pixel brighter than half", so a prediction's objects are known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from loragui.engine.basemodel import save_model
from loragui.engine.preprocessing import Preprocessing
from loragui.engine.unet import UNet, UNetConfig


def disc(shape, cy, cx, r) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def disc_labels(size: int = 64) -> np.ndarray:
    """Instance labels: two touching discs (1, 2), two apart (3, 4)."""
    labels = np.zeros((size, size), np.int32)
    labels[disc(labels.shape, 16, 14, 9)] = 1
    labels[disc(labels.shape, 16, 30, 9) & (labels == 0)] = 2
    labels[disc(labels.shape, 46, 14, 7)] = 3
    labels[disc(labels.shape, 46, 46, 10)] = 4
    return labels


def write_disc_set(root: Path, n: int = 2) -> tuple[Path, Path]:
    """``n`` images of white discs on black (grey 175, 200, 225, 250 by disc) and
    their instance labels as 16-bit PNG masks; the image and mask folders."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i in range(n):
        labels = np.rot90(disc_labels(), i).copy()
        pic = np.where(labels > 0, 150 + 25 * labels, 0).astype(np.uint8)
        Image.fromarray(np.stack([pic] * 3, -1)).save(images / f"d{i}.png")
        Image.fromarray(labels.astype(np.uint16)).save(masks / f"d{i}.png")
    return images, masks


@torch.no_grad()
def _first_channel_through(out_channels: int = 1) -> UNet:
    """A UNet whose last features are the input's first channel, as stored (0..1), and
    whose head is zero: its callers give the head the weights that decide."""
    model = UNet(UNetConfig(width=4, depth=2, out_channels=out_channels))
    for p in model.parameters():
        p.zero_()
    for block in (model.down[0], model.dec[0]):
        source = 0 if block is model.down[0] else model.config.width  # dec: the skip's channel 0
        block.conv1.weight[0, source, 1, 1] = 1
        block.conv2.weight[0, 0, 1, 1] = 1
    return model


@torch.no_grad()
def threshold_base(path: Path) -> Path:
    """A base model whose mask is "first channel above half" (pixels kept as stored)."""
    model = _first_channel_through()
    model.head.weight[0, 0] = 1
    model.head.bias[0] = -0.5
    return save_model(model, path, preprocessing=Preprocessing(method="none").to_dict())


# An objects model's classes as the grey of a picture, for :func:`class_reader`.
CLASS_GREYS = np.array([0, 255, 128], np.uint8)  # background, interior, boundary


def class_picture(classes: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: each pixel's class (0, 1, 2) as its grey (:data:`CLASS_GREYS`)."""
    grey = CLASS_GREYS[np.asarray(classes)]
    return np.stack([grey] * 3, -1)


@torch.no_grad()
def class_reader() -> UNet:
    """An objects model (3 classes) that predicts what a :func:`class_picture` shows:
    its logits are linear in the grey x (0..1), background 0, interior 20x - 15 (wins
    above x = 0.75), boundary 5x - 1.25 (wins between x = 0.25 and 0.75)."""
    model = _first_channel_through(out_channels=3)
    model.head.weight[1:, 0, 0, 0] = torch.tensor([20.0, 5.0])
    model.head.bias[1:] = torch.tensor([-15.0, -1.25])
    return model
