"""The steps of a training run's setup that need nothing but their inputs: what
trains, the optimizer, the seeds.
:class:`loragui.engine.train.Trainer` calls them in order (``Trainer._setup``)."""

from __future__ import annotations

import random

import numpy as np
import torch

from .config import TrainConfig
from .devices import default_forward_mode
from .errors import LoraGuiError
from .lora import LoRASettings, inject_lora, set_extra_trainable, set_forward_mode
from .unet import UNet


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
