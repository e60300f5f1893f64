"""Validation batches: small on the CPU, and the same scores however the images are batched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loragui.engine import validation
from loragui.engine.dataset import DecodedDataset
from loragui.engine.unet import UNet, UNetConfig
from loragui.engine.validation import CPU_VAL_BATCH_PIXELS, VAL_BATCH_PIXELS, Validator


def data(n: int, side: int) -> DecodedDataset:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(n)]
    masks = [(rng.random((side, side)) > 0.5).astype(np.uint8) for _ in range(n)]
    return DecodedDataset([f"i{k}" for k in range(n)], images, masks)


def validator(model: UNet, device: str = "cpu") -> Validator:
    return Validator(model, torch.device(device), autocast=False, lora=False, previews=0,
                     fault=print, resume_hint=str)


def test_the_cpu_validates_in_small_batches_with_the_same_scores(monkeypatch):
    torch.manual_seed(0)
    model = UNet(UNetConfig(width=4, depth=2))
    val = data(20, 128)  # 128² a picture: 16 a batch on the CPU
    sizes = []
    real = UNet.forward_any_size

    def counted(self, x):
        sizes.append(x.shape[0] * x.shape[2] * x.shape[3])
        return real(self, x)

    monkeypatch.setattr(UNet, "forward_any_size", counted)
    small = validator(model).run(val)
    assert sizes == [16 * 128 * 128, 4 * 128 * 128] and CPU_VAL_BATCH_PIXELS == 16 * 128 * 128
    sizes.clear()
    monkeypatch.setattr(validation, "CPU_VAL_BATCH_PIXELS", 128 * 128)  # one image a batch
    alone = validator(model).run(val)
    assert sizes == [128 * 128] * 20
    assert small.summary["dice"] == pytest.approx(alone.summary["dice"], abs=1e-6)
    assert small.val_loss == pytest.approx(alone.val_loss, rel=1e-5)


def test_other_devices_keep_large_batches():
    assert validator(UNet(UNetConfig(width=4, depth=2)), "meta").batch_pixels \
        == VAL_BATCH_PIXELS > CPU_VAL_BATCH_PIXELS
