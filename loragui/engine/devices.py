"""Device discovery: which of cpu / cuda:N / mps exist here, and what they can do."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import DeviceError


@dataclass
class DeviceInfo:
    name: str  # "cpu", "cuda:0", "mps": what --device takes
    label: str  # for people: "NVIDIA H200 (139 GiB)"
    available: bool
    reason: str = ""  # why it is not available
    memory_bytes: int | None = None


def _cpu_label() -> str:
    return f"CPU ({os.cpu_count() or 1} cores)"


def list_devices() -> list[DeviceInfo]:
    """Every device this machine could offer, available or not (with the reason)."""
    devices = [DeviceInfo("cpu", _cpu_label(), True)]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gib = props.total_memory / 2**30
            devices.append(DeviceInfo(f"cuda:{i}", f"{props.name} ({gib:.0f} GiB)", True,
                                      memory_bytes=props.total_memory))
    else:
        if torch.version.cuda is None:
            why = "this PyTorch build has no CUDA support (install a CUDA build of torch)"
        else:
            why = "no NVIDIA GPU or driver was found"
        devices.append(DeviceInfo("cuda", "CUDA GPU", False, why))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(DeviceInfo("mps", "Apple GPU (MPS)", True))
    else:
        devices.append(DeviceInfo("mps", "Apple GPU (MPS)", False, "only on Apple-silicon Macs"))
    return devices


def resolve_device(name: str | None) -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a usable torch.device or raise DeviceError."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            info = next(d for d in list_devices() if d.name.startswith("cuda"))
            raise DeviceError(f"CUDA was asked for, but {info.reason or 'it is not available'}. "
                              "Use --device cpu (or auto).")
        index = 0
        if ":" in name:
            try:
                index = int(name.split(":", 1)[1])
            except ValueError:
                raise DeviceError(f"unknown device {name!r}: write cuda:0, cuda:1, ...") from None
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise DeviceError(f"there is no {name}: this machine has {count} CUDA device(s) "
                              f"(cuda:0 … cuda:{count - 1})")
        return torch.device("cuda", index)
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError("MPS (Apple GPU) was asked for but is not available here; "
                              "use --device cpu (or auto).")
        return torch.device("mps")
    raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")


def supports_bf16(device: torch.device) -> bool:
    """bf16 autocast only where it pays: CUDA with native bf16, and a CPU with AMX matrix
    tiles (Intel Xeon since Sapphire Rapids), whose convolutions run 2.5-3x faster in
    bf16 than in float32. Other CPUs emulate bf16 and run it several times slower than
    float32, so they keep float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_amx()


def cpu_has_amx() -> bool:
    """Whether this CPU multiplies bf16 matrices in AMX tiles (torch's own probe)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def default_forward_mode(device: torch.device) -> str:
    """The LoRA forward form to train with; all three compute the same function.

    On a GPU the merged form: one convolution per layer with the merged weight
    W + s·B·A, because the thin branch convolutions cost a GPU more than they save.
    On the CPU the form picked per layer (``"auto"``): for wide layers the fused form,
    the merged weight's forward and a backward pass that never forms the frozen
    weight's gradient (the merged form computes it, a full convolution's work on a
    device with little to spare); for narrow ones the merged form, whose one large
    weight gradient costs the CPU less than the fused form's thin convolutions. The
    README's "Devices and speed" has the figures (``benchmarks/speed.py``).
    """
    return "auto" if device.type == "cpu" else "merged"
