"""From normalised uint8 pixels to the model's input: the one conversion that
training, validation, prediction and export share.

The model sees float32 ``(B, C, H, W)`` in ``[0, 1]``: the normalised pixel
divided by 255 (the ONNX file's metadata says the same to its users).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def scale_pixels(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1], any layout, on their device."""
    return x.float().div_(255)


def to_model_input(images: np.ndarray | Sequence[np.ndarray],
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """One (H, W, C) or (H, W) uint8 image, or a sequence of same-sized (H, W, C)
    ones -> (B, C, H, W) float32 in [0, 1] on ``device``.

    The uint8 array travels to the device and is converted there: a quarter of
    the bytes of float32 cross the bus.
    """
    if isinstance(images, np.ndarray):
        arr = images[..., None] if images.ndim == 2 else images
        arr = arr[None]
    else:
        arr = np.stack(list(images))
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(device)  # (B, H, W, C) uint8
    return scale_pixels(x.permute(0, 3, 1, 2))
