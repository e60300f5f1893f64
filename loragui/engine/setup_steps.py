"""The steps of a training run's setup that need nothing but their inputs: the
settings' check, the run folder, the model, what trains, the optimizer, the seeds.
:class:`loragui.engine.train.Trainer` calls them in order (``Trainer._setup``)."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import clean_folder
from .basemodel import load_model, resolve_base
from .config import TrainConfig
from .devices import default_forward_mode
from .errors import LoraGuiError
from .lora import LoRASettings, inject_lora, set_extra_trainable, set_forward_mode
from .preprocessing import Preprocessing
from .runrecord import RUN_FILES
from .unet import UNet, UNetConfig


def check_settings(c: TrainConfig) -> None:
    """Refuses settings no run can start with, saying what to change."""
    if not c.out:
        raise LoraGuiError("no output folder given: pass --out DIR")
    if c.batch_size < 1 or (c.crop_size and c.crop_size < 8) or c.epochs < 1 or c.rank < 1:
        raise LoraGuiError("batch size and epochs must be ≥ 1, rank ≥ 1, crop size ≥ 8 "
                           "(or 0 for auto)")
    if not 0 <= c.val_fraction < 1:
        raise LoraGuiError("the validation fraction must be in [0, 1)")
    default = TrainConfig()
    if not (math.isfinite(c.lr) and c.lr > 0):
        raise LoraGuiError(f"the learning rate must be a positive number, not {c.lr:g} "
                           f"(try the default, --lr {default.lr:g})")
    if not (math.isfinite(c.whole_lr_scale) and c.whole_lr_scale >= 0):
        raise LoraGuiError(f"--whole-lr-scale must be 0 or more, not {c.whole_lr_scale:g} "
                           "(0 freezes the weights trained whole; the default is "
                           f"{default.whole_lr_scale:g})")


def prepare_run_folder(out: Path) -> None:
    """Creates the run folder and removes what a killed run left half-written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LoraGuiError(f"cannot create the output folder {out}: "
                           f"{exc.strerror or exc}. Choose another folder.") from None
    clean_folder(out, RUN_FILES)  # what a killed run left half-written


def build_model(c: TrainConfig, device_type: str) -> tuple[UNet, Any, Preprocessing]:
    """(model, base model's info or None, preprocessing): a fresh UNet for --full
    without --base, else the base model."""
    if c.full and not c.base:
        return UNet(UNetConfig(width=c.width, depth=c.depth)), None, Preprocessing()
    model, info = load_model(resolve_base(c.base, device_type=device_type))
    return model, info, Preprocessing.from_dict(info.preprocessing)


def make_trainable(model: UNet, c: TrainConfig, device: torch.device
                   ) -> tuple[LoRASettings | None, list[str]]:
    """Moves the model to the device and makes what trains trainable: every weight
    (--full), or LoRA factors plus the weights trained whole. Returns (LoRA settings
    or None, names of the parameters trained whole)."""
    model.to(device)
    if c.full:
        for p in model.parameters():
            p.requires_grad_(True)
        lora, extra = None, []
    else:
        lora = LoRASettings(rank=c.rank, alpha=c.alpha, rslora=c.rslora,
                            dropout=c.dropout, targets=list(c.targets),
                            exclude=list(c.train_modules))
        try:
            inject_lora(model, lora)
        except ValueError as exc:
            raise LoraGuiError(f"{exc}; check the layer patterns (--targets)") from None
        model.to(device)
        extra = set_extra_trainable(model, biases=c.train_bias,
                                    modules=list(c.train_modules))
        set_forward_mode(model, default_forward_mode(device))
    if device.type != "mps":
        model.to(memory_format=torch.channels_last)
    return lora, extra


def make_optimizer(model: UNet, c: TrainConfig
                   ) -> tuple[list[torch.nn.Parameter], torch.optim.AdamW]:
    """(trainable parameters, AdamW over them). Groups by (learning-rate multiplier,
    weight decay): LoRA factors (full training: every weight) at the learning rate,
    weights trained whole (biases, --train-modules) at whole_lr_scale times it; no
    decay on 1-d tensors. Groups that coincide (the default scale of 1) are one."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    members: dict[tuple[float, float], list[torch.nn.Parameter]] = {
        key: [] for key in ((1.0, c.weight_decay), (1.0, 0.0),
                            (c.whole_lr_scale, c.weight_decay), (c.whole_lr_scale, 0.0))}
    for name, p in named:
        mult = 1.0 if c.full or ".lora_" in name else c.whole_lr_scale
        members[(mult, c.weight_decay if p.ndim > 1 else 0.0)].append(p)
    optimizer = torch.optim.AdamW(
        [{"params": ps, "weight_decay": decay, "lr_mult": mult}
         for (mult, decay), ps in members.items() if ps], lr=c.lr)
    return [p for _, p in named], optimizer


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
