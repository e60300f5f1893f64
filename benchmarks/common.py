"""Helpers shared by the benchmarks: data location, a PEFT baseline written as a user would."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from loragui.engine.metrics import SegmentationScores, dice_bce_loss
from loragui.engine.predict import predict_probability

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The DSB2018 data: $LORAGUI_DATA or a ``shared/data`` folder beside or inside the checkout."""
    env = os.environ.get("LORAGUI_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO / "shared" / "data", REPO.parent / "shared" / "data"]
    for c in candidates:
        if (c / "dsb2018").is_dir():
            return c / "dsb2018"
    raise SystemExit("DSB2018 data not found: set LORAGUI_DATA to the folder holding dsb2018/")


def numpy_crops(images, masks, batch, size, rng):
    """The crop loop a user writes: random crop + flips in numpy, then torch tensors."""
    xs, ys = [], []
    for _ in range(batch):
        i = rng.integers(len(images))
        im, m = images[i], masks[i]
        h, w = m.shape
        if h < size or w < size:
            ph, pw = max(0, size - h), max(0, size - w)
            im = np.pad(im, ((0, ph), (0, pw), (0, 0)))
            m = np.pad(m, ((0, ph), (0, pw)))
            h, w = m.shape
        top, left = rng.integers(h - size + 1), rng.integers(w - size + 1)
        ci = im[top:top + size, left:left + size]
        cm = m[top:top + size, left:left + size]
        if rng.random() < 0.5:
            ci, cm = ci[:, ::-1], cm[:, ::-1]
        if rng.random() < 0.5:
            ci, cm = ci[::-1], cm[::-1]
        xs.append(np.ascontiguousarray(ci))
        ys.append(np.ascontiguousarray(cm))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(np.stack(ys)).float()[:, None]
    return x, y


def evaluate_model(model, images, masks, device) -> dict:
    model.eval()
    scores = SegmentationScores()
    with torch.no_grad():
        for im, m in zip(images, masks, strict=True):
            prob = predict_probability(model, im, device).numpy()
            scores.add(prob > 0.5, m > 0)
    return scores.summary()


def peft_model(base_model, rank: int, alpha: float):
    """PEFT LoRA on every Conv2d of the UNet (PEFT cannot adapt ConvTranspose2d)."""
    from peft import LoraConfig, get_peft_model

    targets = [n for n, m in base_model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0)
    return get_peft_model(base_model, cfg)


def train_plain(model, images, masks, *, steps, batch, size, lr, device, bf16, channels_last,
                seed=0, validate_every=0, validate=None) -> float:
    """A hand-written loop: AdamW, cosine schedule, BCE+Dice; returns wall seconds.

    ``validate(step)``, if given, is called every ``validate_every`` steps and at the
    end (its time counts in the wall seconds); the model is put back in training mode."""
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    sync(device)
    t0 = time.perf_counter()
    for step in range(steps):
        x, y = numpy_crops(images, masks, batch, size, rng)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = dice_bce_loss(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        done = step + 1
        if validate is not None and (done % validate_every == 0 or done == steps):
            validate(done)
            model.train()
    sync(device)
    return time.perf_counter() - t0


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
