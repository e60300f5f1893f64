"""The checks of a training's settings against its model and device, once both are
known and before any image is decoded: layer names that match nothing, a crop side
the model cannot take as it is, a rank beyond what a layer can use, and memory the
device does not have. A refusal is a :class:`~.errors.LoraGuiError` naming the
option and what to do; an adjustment is a note (one line) for the log.
"""

from __future__ import annotations

from torch import nn

from .config import TrainConfig
from .errors import LoraGuiError
from .lora import target_names
from .memory import Architecture, available_bytes, estimate, gigabytes, largest_batch
from .unet import UNet

MAX_LISTED = 30  # names listed in a message; a UNet of depth 3 has about two dozen convs


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def check_layers(model: nn.Module, config: TrainConfig) -> None:
    """Refuse a --targets pattern or a --train-modules name that matches no module of
    ``model``, listing the valid names; and targets that leave nothing to adapt."""
    convs = target_names(model, ["*"])
    for pattern in config.targets:
        if not target_names(model, [pattern]):
            raise LoraGuiError(f"--targets {pattern!r} matches no convolution of the model; "
                               f"its convolutions are {_listing(convs)}")
    modules = [name for name, _ in model.named_modules() if name]
    for name in config.train_modules:
        if name not in modules:
            tops = [m for m in modules if "." not in m]
            raise LoraGuiError(f"--train-modules {name!r} is not a module of the model; its "
                               f"modules are {_listing(tops)} (and their parts, such as "
                               f"{_listing([m for m in modules if '.' in m][:3])})")
    if not config.full and not target_names(model, config.targets, config.train_modules):
        raise LoraGuiError("every convolution that --targets names is trained whole "
                           "(--train-modules): nothing is left for LoRA to adapt; "
                           "change --targets or --train-modules")


def fitted_crop(crop: int, model: UNet) -> tuple[int, str | None]:
    """The crop side rounded up to the multiple of 2**depth the model takes, and a note
    saying so (None when it already was one)."""
    m = model.multiple
    fitted = -(-crop // m) * m
    if fitted == crop:
        return crop, None
    return fitted, (f"crop size {crop} rounded up to {fitted}: the model's "
                    f"{model.config.depth} poolings take sides that are multiples of {m}")


def rank_note(model: nn.Module, config: TrainConfig) -> str | None:
    """A note when --rank exceeds what every adapted layer can use (the rank of its
    full weight update): the extra factors add memory and learn nothing more."""
    if config.full:
        return None
    useful = 0
    for name in target_names(model, config.targets, config.train_modules):
        conv = model.get_submodule(name)
        k = conv.kernel_size[0] * conv.kernel_size[1]
        useful = max(useful, min(conv.in_channels * k, conv.out_channels))
    if useful and config.rank > useful:
        return (f"--rank {config.rank} is more than any adapted layer can use (at most "
                f"{useful} for this model): the adapter is larger, not better; "
                f"--rank {min(useful, 16)} or less is usual")
    return None


def check_memory(arch: Architecture, config: TrainConfig, *, crop: int, device_type: str,
                 device_index: int | None = None, bf16: bool = False) -> None:
    """Refuse a training whose estimated memory clearly exceeds what the device has free,
    saying what fits instead."""
    available = available_bytes(device_type, device_index)
    if available is None:
        return
    rank = None if config.full else config.rank
    width = 2 if bf16 else 4
    need = estimate(arch, crop=crop, batch=config.batch_size, rank=rank, bytes_per_value=width)
    if need.total <= available:
        return
    where = "the GPU has" if device_type == "cuda" else "the computer has"
    fits = largest_batch(arch, crop=crop, rank=rank, available=available, bytes_per_value=width)
    if fits >= 1:
        advice = f"use --batch-size {fits} or less, or a smaller --crop-size"
    else:
        weights = need.weights + need.training_state
        advice = ("the model alone needs " + gigabytes(weights) + "; use a smaller "
                  + ("--width or --depth" if config.full and not config.base else "--rank")
                  if weights > available else "use a smaller --crop-size")
    raise LoraGuiError(
        f"this training needs about {gigabytes(need.total)} of memory ({gigabytes(need.weights)} "
        f"of weights, {gigabytes(need.training_state)} of gradients and optimizer state, "
        f"{gigabytes(need.activations)} for a batch of {config.batch_size} crops of {crop} px) "
        f"but {where} {gigabytes(available)} free: {advice}")
