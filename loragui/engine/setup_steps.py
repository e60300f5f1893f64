"""The steps of a training run's setup that need nothing but their inputs: the base
model, the checks before any image is decoded (layers, crop, memory), what trains,
the optimizer, the seeds, whether the step compiles.
:class:`loragui.engine.train.Trainer` calls them in order (``Trainer._setup``)."""

from __future__ import annotations

import random
from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from .basemodel import load_model, resolve_base
from .config import TrainConfig
from .devices import default_forward_mode, supports_bf16
from .errors import LoraGuiError
from .events import LogEvent
from .lora import LoRASettings, inject_lora, set_extra_trainable, set_forward_mode
from .memory import Architecture
from .preflight import check_layers, check_memory, fitted_crop, rank_note
from .preprocessing import Preprocessing
from .unet import UNet, UNetConfig


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
        lora = lora_settings(c)
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


def lora_settings(c: TrainConfig) -> LoRASettings:
    """The LoRA layers a run's settings ask for (modules trained whole get none)."""
    return LoRASettings(rank=c.rank, alpha=c.alpha, rslora=c.rslora, dropout=c.dropout,
                        targets=list(c.targets), exclude=list(c.train_modules))


def make_optimizer(model: UNet, c: TrainConfig, device: torch.device
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
    # The fused kernel updates every tensor in one launch; on the CPU it is no faster.
    optimizer = torch.optim.AdamW(
        [{"params": ps, "weight_decay": decay, "lr_mult": mult}
         for (mult, decay), ps in members.items() if ps], lr=c.lr, fused=device.type == "cuda")
    return [p for _, p in named], optimizer


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def compiles(c: TrainConfig, device_type: str, planned_crops: int) -> bool:
    """Whether a run compiles its training step: on a CUDA GPU, for a run long enough
    that the compile time pays (``compile_from``, see its comment in config.py)."""
    return c.compile and device_type == "cuda" and planned_crops >= c.compile_from


def load_base(c: TrainConfig, device: torch.device) -> tuple[UNet, Any, Preprocessing]:
    """(model, base model's info or None, preprocessing): a fresh UNet for --full
    without --base, else the base model."""
    if c.full and not c.base:
        arch = UNetConfig(width=c.width, depth=c.depth)
        check_fits(c, arch, 2**arch.depth, device)  # before the weights are allocated
        return UNet(arch), None, Preprocessing()
    model, info = load_model(resolve_base(c.base, device_type=device.type))
    return model, info, Preprocessing.from_dict(info.preprocessing)


def check_fits(c: TrainConfig, arch: UNetConfig, multiple: int, device: torch.device) -> None:
    """Refuse a training that clearly cannot fit the device's memory (:mod:`.memory`)."""
    crop = -(-c.auto_crop_size(device.type) // multiple) * multiple
    check_memory(Architecture(**arch.to_dict()), c, crop=crop, device_type=device.type,
                 device_index=device.index, bf16=supports_bf16(device))


def preflight(model: UNet, c: TrainConfig, device: torch.device
              ) -> Generator[LogEvent, None, int]:
    """The settings against the model and the device, before any image is decoded;
    returns the crop size (rounded to what the model takes)."""
    check_layers(model, c)
    crop_size, note = fitted_crop(c.auto_crop_size(device.type), model)
    if note:
        yield LogEvent(note, "info")
    note = rank_note(model, c)
    if note:
        yield LogEvent(note, "warning")
    if not (c.full and not c.base):
        check_fits(c, model.config, model.multiple, device)
    return crop_size
