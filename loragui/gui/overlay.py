"""Mask overlays drawn with numpy (Qt-free, so worker threads can build them).

Colours: the ground truth is a green outline, the prediction a magenta fill
whose opacity follows the predicted probability, with a magenta outline. Green and magenta stay
distinguishable for the common red-green colour-vision deficiencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from loragui.engine.events import EpochEvent

GT_COLOUR = np.array([40, 230, 90], dtype=np.float32)  # green
PRED_COLOUR = np.array([255, 40, 220], dtype=np.float32)  # magenta


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Any (H,W), (H,W,1), (H,W,3) or (H,W,4) array as (H,W,3) uint8."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    a = a[:, :, :3]
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        a = ((a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)).astype(np.uint8)
    return np.ascontiguousarray(a)


def outline(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """The boundary pixels of a boolean mask (inside pixels touching the outside)."""
    m = np.asarray(mask, dtype=bool)
    inner = m.copy()
    for _ in range(max(1, thickness)):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return m & ~inner


def overlay(image: np.ndarray, mask: np.ndarray | None = None,
            prediction: np.ndarray | None = None, *, fill_mask: float = 0.0) -> np.ndarray:
    """``image`` with the prediction tinted magenta and the ground truth outlined green.

    ``prediction`` is a probability map in [0, 1]; ``fill_mask`` > 0 also tints the
    inside of the ground truth (used for thumbnails, where there is no prediction).
    Returns a new (H, W, 3) uint8 array.
    """
    rgb = as_rgb(image).astype(np.float32)
    h, w = rgb.shape[:2]
    thickness = 1 if max(h, w) < 160 else 2
    if prediction is not None:
        p = np.clip(np.asarray(prediction, dtype=np.float32)[:h, :w], 0.0, 1.0)
        alpha = (0.5 * p)[:, :, None]
        rgb = rgb * (1 - alpha) + PRED_COLOUR * alpha
        # ...and the predicted mask's outline, so it stands out on stained tissue too.
        rgb[outline(p >= 0.5, thickness)] = PRED_COLOUR
    if mask is not None:
        m = np.asarray(mask, dtype=bool)[:h, :w]
        if fill_mask > 0:
            rgb[m] = rgb[m] * (1 - fill_mask) + GT_COLOUR * fill_mask
        rgb[outline(m, thickness)] = GT_COLOUR
    return np.clip(rgb, 0, 255).astype(np.uint8)


def class_overlay(image: np.ndarray, mask: np.ndarray, classes: np.ndarray,
                  colours: tuple[str, ...]) -> np.ndarray:
    """``image`` with each predicted class but the background (0) tinted its colour and
    outlined, and the ground truth's foreground outlined green. (H, W, 3) uint8."""
    rgb = as_rgb(image).astype(np.float32)
    h, w = rgb.shape[:2]
    thickness = 1 if max(h, w) < 160 else 2
    classes = np.asarray(classes)[:h, :w]
    for k, colour in enumerate(colours):
        where = classes == k
        if k == 0 or not where.any():
            continue
        tint = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float32)
        rgb[where] = rgb[where] * 0.5 + tint * 0.5
        rgb[outline(where, thickness)] = tint
    rgb[outline(np.asarray(mask, dtype=bool)[:h, :w], thickness)] = GT_COLOUR
    return np.clip(rgb, 0, 255).astype(np.uint8)


def preview_overlay(p) -> np.ndarray:
    """A validation preview's picture: per class for a run of several classes."""
    if p.classes is not None and p.colours:
        return class_overlay(p.image, p.mask, p.classes, p.colours)
    return overlay(p.image, p.mask, p.prediction)


def dice(mask: np.ndarray, prediction: np.ndarray, threshold: float = 0.5) -> float | None:
    """Dice of one image (None when both the mask and the prediction are empty)."""
    m = np.asarray(mask, dtype=bool)
    p = np.asarray(prediction) >= threshold
    total = int(m.sum()) + int(p.sum())
    if total == 0:
        return None
    return 2.0 * int((m & p).sum()) / total


@dataclass
class EpochWithOverlays(EpochEvent):
    """An epoch's event with its previews already drawn, in the worker thread that
    received it: the GUI thread then only shows the pictures."""

    overlays: list[tuple[np.ndarray, float | None]] = field(default_factory=list)  # (RGB, Dice)


def with_overlays(event: EpochEvent) -> EpochEvent:
    """``event`` as an :class:`EpochWithOverlays` (unchanged if drawing fails: the view
    then draws the previews itself)."""
    try:
        overlays = [(preview_overlay(p), dice(p.mask, p.prediction)) for p in event.previews]
    except Exception:  # noqa: BLE001 - the view draws them itself then
        return event
    return EpochWithOverlays(**{f.name: getattr(event, f.name) for f in fields(EpochEvent)},
                             overlays=overlays)
