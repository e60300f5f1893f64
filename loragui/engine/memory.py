"""How much memory a training needs, and how much the device has: checked before a
model is built, so that a setting that cannot fit is refused with a message instead
of growing until the operating system kills the process.

The estimate is arithmetic on the UNet's shape (see :mod:`.unet`): the weights,
their gradients and AdamW's two moments for what trains, and the activations that
back-propagation keeps for a batch of crops. It errs low (it leaves out the
framework's own workspace), so what it refuses clearly cannot fit.
Torch-free except for asking a CUDA device what it has free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    """What the estimate needs of a UNet (:class:`~.unet.UNetConfig`'s fields)."""

    in_channels: int = 3
    out_channels: int = 1
    width: int = 32
    depth: int = 3


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes a training step needs, by kind."""

    weights: int  # every parameter (the frozen base and the LoRA factors)
    training_state: int  # gradients and AdamW's two moments of what trains
    activations: int  # what back-propagation keeps for one batch

    @property
    def total(self) -> int:
        return self.weights + self.training_state + self.activations


def _convs(arch: Architecture) -> list[tuple[int, int, int, int]]:
    """(in, out, kernel side, output pixels per input pixel as a power of 1/4: the
    level) of every convolution, in the order the UNet builds them."""
    w = [arch.width * 2**level for level in range(arch.depth + 1)]
    convs = []
    channels = arch.in_channels
    for level in range(arch.depth):
        convs += [(channels, w[level], 3, level), (w[level], w[level], 3, level)]
        channels = w[level]
    convs += [(w[arch.depth - 1], w[arch.depth], 3, arch.depth),
              (w[arch.depth], w[arch.depth], 3, arch.depth)]
    for level in range(arch.depth):
        convs += [(w[level + 1], w[level], 2, level),  # the up-sampling ConvTranspose2d
                  (2 * w[level], w[level], 3, level), (w[level], w[level], 3, level)]
    convs.append((w[0], arch.out_channels, 1, 0))
    return convs


def parameter_count(arch: Architecture) -> int:
    """The UNet's parameters (weights and biases), without building it."""
    return sum(i * o * k * k + o for i, o, k, _ in _convs(arch))


def estimate(arch: Architecture, *, crop: int, batch: int, rank: int | None,
             bytes_per_value: int = 4) -> MemoryNeed:
    """The memory of one training step: ``rank`` None trains every weight (--full),
    otherwise LoRA of that rank on every convolution (an upper bound for fewer)."""
    convs = _convs(arch)
    params = parameter_count(arch)
    pixels = crop * crop
    # Each conv keeps its output and the ReLU's; a decoder level also keeps the
    # up-sampled map and the concatenation (2x its channels); pooling a quarter.
    kept = 0.0
    for _, out, _, level in convs:
        kept += 2 * out * pixels / 4**level
    for level in range(arch.depth):
        c = arch.width * 2**level
        kept += (2 * c + c / 4) * pixels / 4**level
    if rank is None:
        trained = params
        lora_params = 0
    else:
        lora_params = sum(rank * i * k * k + o * rank for i, o, k, _ in convs)
        trained = lora_params + sum(o for _, o, _, _ in convs)  # the factors and the biases
        kept += sum((rank + o) * pixels / 4**level for _, o, _, level in convs)
    return MemoryNeed(weights=4 * (params + lora_params), training_state=4 * 3 * trained,
                      activations=int(kept * batch * bytes_per_value))


def available_bytes(device_type: str, index: int | None = None) -> int | None:
    """Memory free for a training on this device, or None where it cannot be known
    (the Apple GPU; a system that does not say)."""
    if device_type == "cuda":
        import torch  # only asked when a CUDA device trains

        try:
            free, _total = torch.cuda.mem_get_info(index)
        except Exception:  # a driver that cannot say
            return None
        return int(free)
    if device_type != "cpu":
        return None
    # MemAvailable counts the page cache the kernel gives back; sysconf's free pages do not.
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            continue
    return None


def gigabytes(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**27 else f"{n / 2**20:.0f} MB"


def largest_batch(arch: Architecture, *, crop: int, rank: int | None, available: int,
                  bytes_per_value: int = 4) -> int:
    """The largest batch whose estimate fits ``available`` (0: not even one crop)."""
    one = estimate(arch, crop=crop, batch=1, rank=rank, bytes_per_value=bytes_per_value)
    fixed = one.weights + one.training_state
    if one.total > available:
        return 0
    return int((available - fixed) // max(1, one.activations))
