"""A tiny base model and a tiny training for fast tests (written with loragui's own formats)."""

from __future__ import annotations

from pathlib import Path

import torch

from loragui.engine.basemodel import save_model
from loragui.engine.config import TrainConfig
from loragui.engine.preprocessing import Preprocessing
from loragui.engine.unet import UNet, UNetConfig
from tests.messy import make_tiny_dataset


def make_tiny_base(path: Path, width: int = 4, depth: int = 2, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = UNet(UNetConfig(width=width, depth=depth))
    return save_model(model, path, preprocessing=Preprocessing().to_dict())


def tiny_config(tmp_path: Path, *, base_width: int = 4, **overrides) -> TrainConfig:
    """4 epochs x 5 steps of a tiny UNet on 8 32x32 images (2 for validation): about a second.

    The data set and the base model (``base_width`` channels, depth 2) go under
    ``tmp_path``; a base already there is reused, so a second call for the same
    folder (a resume) trains the same model. ``overrides`` are TrainConfig fields.
    """
    images, masks = make_tiny_dataset(tmp_path / "data", n=8, size=32)
    base = tmp_path / "base.safetensors"
    if not base.exists():
        make_tiny_base(base, width=base_width)
    values = dict(images=str(images), masks=str(masks), out=str(tmp_path / "run"), base=str(base),
                  rank=4, alpha=8, epochs=4, steps_per_epoch=5, batch_size=4, crop_size=32,
                  val_fraction=0.25, device="cpu", lr=1e-2, previews=0)
    values.update(overrides)
    return TrainConfig(**values)
