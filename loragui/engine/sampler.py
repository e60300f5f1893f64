"""Training crops: random, augmented, cut in batches on the training device.

:class:`CropSampler` puts a :class:`~loragui.engine.dataset.DecodedDataset`
on the device once and cuts every batch there, so training never goes back
to the files.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .dataset import DecodedDataset
from .errors import DataError
from .model_input import scale_pixels


def _pad_to(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad an image smaller than the crop (and its mask, the same way) up to ``size``.

    Mirroring keeps the padding looking like the image; the mask is mirrored
    with it, because zero labels on mirrored cells would teach "cells here are
    background". When the image is too small to mirror once, both get zeros.
    """
    for axis in (0, 1):
        short = size - mask.shape[axis]
        if short <= 0:
            continue
        before, after = short // 2, short - short // 2
        mode = "reflect" if after < mask.shape[axis] else "constant"
        widths = [(0, 0)] * 3
        widths[axis] = (before, after)
        image = np.pad(image, widths, mode=mode)
        mask = np.pad(mask, widths[:2], mode=mode)
    return image, mask


def _dihedral(z: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Per-sample transpose / left-right / up-down flips of square crops:
    together the 8 rotations and mirrorings, applied to the whole batch at once."""
    for k, op in enumerate((lambda t: t.transpose(-1, -2), lambda t: t.flip(-1),
                            lambda t: t.flip(-2))):
        z = torch.where(flags[:, k].view(-1, 1, 1, 1), op(z), z)
    return z


def _jitter(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Mild per-sample contrast, brightness and gamma changes (r: (B, 3) uniform).

    Users' images differ in exposure from the base model's; this makes the
    adapter less sensitive to it. Results stay in [0, 1].
    """
    contrast = torch.exp((r[:, 0] * 2 - 1) * math.log(1.25)).view(-1, 1, 1, 1)
    brightness = ((r[:, 1] * 2 - 1) * 0.08).view(-1, 1, 1, 1)
    gamma = torch.exp((r[:, 2] * 2 - 1) * math.log(1.3)).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean + brightness).clamp_(0, 1)
    return x.pow_(gamma)


class CropSampler:
    """Random training crops with augmentation, built in batches on the training device.

    Images are chosen with probability proportional to their area, so every
    pixel of the data set is equally likely to be trained on: a 1024² image
    holds 16 times the cells of a 256² one and should give 16 times the crops.
    Every call draws the same random numbers whatever the options, so a given
    seed gives the same crop positions with or without augmentation.
    """

    def __init__(self, data: DecodedDataset, crop_size: int, device: torch.device | str = "cpu",
                 *, augment: bool = True, seed: int = 0, intensity: bool = True) -> None:
        if len(data) == 0:
            raise DataError("There are no training images to sample crops from.")
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 1:
            raise DataError(f"The crop size must be a positive whole number, not {crop_size!r}.")
        self.crop_size = crop_size
        self.device = torch.device(device)
        self.augment = augment
        self.intensity = intensity
        self.seed = seed
        self.channels = data.images[0].shape[2]
        # Image channels and the mask stacked: one slice and one transform per crop.
        self._stacks: list[torch.Tensor] = []
        areas = []
        for image, mask in zip(data.images, data.masks, strict=True):
            image, mask = _pad_to(image, mask, crop_size)
            stack = np.concatenate([image, mask[..., None].astype(np.uint8)], axis=2)
            self._stacks.append(torch.from_numpy(stack.transpose(2, 0, 1).copy()).to(self.device))
            areas.append(float(mask.shape[0] * mask.shape[1]))
        self._weights = torch.tensor(areas, dtype=torch.float64)
        self._generator = torch.Generator().manual_seed(seed)

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, S, S) float32 in [0, 1]; y: (B, 1, S, S) float32 0/1 (or class
        indices: crops, flips and mirrored padding move pixels, never blend them); on
        the device."""
        g, size = self._generator, self.crop_size
        which = torch.multinomial(self._weights, batch_size, replacement=True, generator=g)
        where = torch.rand(batch_size, 2, generator=g, dtype=torch.float64)
        flips = torch.rand(batch_size, 3, generator=g) < 0.5
        tone = torch.rand(batch_size, 3, generator=g)
        crops = []
        for i, (fy, fx) in zip(which.tolist(), where.tolist(), strict=True):
            stack = self._stacks[i]
            y0 = int(fy * (stack.shape[1] - size + 1))
            x0 = int(fx * (stack.shape[2] - size + 1))
            crops.append(stack[:, y0:y0 + size, x0:x0 + size])
        z = torch.stack(crops)
        if self.augment:
            z = _dihedral(z, flips.to(self.device))
        x = scale_pixels(z[:, :-1])
        y = z[:, -1:].float()
        if self.augment and self.intensity:
            x = _jitter(x, tone.to(self.device))
        return x, y

    def state_dict(self) -> dict[str, Any]:
        """The random stream's position, so a resumed run draws the same crops."""
        return {"generator": self._generator.get_state(), "seed": self.seed}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        try:
            state = torch.as_tensor(d["generator"], dtype=torch.uint8).cpu()
            self._generator.set_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"The saved crop-sampler state is damaged ({exc}); start the run "
                            "again without resuming.") from None

