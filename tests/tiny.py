"""A tiny base model for fast tests (written with loragui's own file format)."""

from __future__ import annotations

from pathlib import Path

import torch

from loragui.engine.basemodel import save_model
from loragui.engine.preprocessing import Preprocessing
from loragui.engine.unet import UNet, UNetConfig


def make_tiny_base(path: Path, width: int = 4, depth: int = 2, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = UNet(UNetConfig(width=width, depth=depth))
    return save_model(model, path, preprocessing=Preprocessing().to_dict())
