"""Base-model and merged-model files: writing, loading with every tensor checked, and
finding the base model to use (given, or bundled)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file

from .. import __version__
from .atomic import atomic_write
from .errors import LoraGuiError, ModelFileError
from .formats import ADAPTER_CONFIG, ADAPTER_FORMAT, BASE_FORMAT, MERGED_FORMAT, now_iso
from .resources import bundled_base_path, bundled_base_with_sha256
from .safetensors_file import (
    FLOAT_DTYPES,
    check_finite,
    json_field,
    load_checked,
    maybe_json,
    tensors_from,
)
from .unet import UNet, UNetConfig

if TYPE_CHECKING:
    from .adapters import Adapter


@dataclass
class BaseModelInfo:
    path: Path
    sha256: str
    architecture: UNetConfig
    preprocessing: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name


def save_model(model: UNet, path: str | os.PathLike, *, preprocessing: dict[str, Any],
               kind: str = BASE_FORMAT, extra: dict[str, Any] | None = None) -> Path:
    """Write a plain (LoRA-free) UNet as a base-model or merged-model file, atomically."""
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": kind,
        "format_version": "1",
        "architecture": json.dumps(model.config.to_dict()),
        "preprocessing": json.dumps(preprocessing),
        "loragui_version": __version__,
        "created": now_iso(),
    }
    for key, value in (extra or {}).items():
        metadata[key] = json.dumps(value)
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def _expected_state(arch: UNetConfig) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a UNet, without allocating it (meta device)."""
    with torch.device("meta"):
        model = UNet(arch)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_model(path: str | os.PathLike) -> tuple[UNet, BaseModelInfo]:
    """Load a base or merged model file into a UNet on the CPU, checking every tensor."""
    path = Path(path)
    if path.is_dir():
        if (path / ADAPTER_CONFIG).exists():
            raise ModelFileError(f"{path} is an adapter folder, not a base model; pass it as "
                                 "--adapter and give the base model with --base")
        raise ModelFileError(f"base model {path} is a folder, not a model file")
    header, metadata, data = load_checked(path, "base model")
    fmt = metadata.get("format")
    if fmt not in (BASE_FORMAT, MERGED_FORMAT):
        if fmt == ADAPTER_FORMAT or "adapter_config" in metadata:
            raise ModelFileError(f"{path.name} is an adapter, not a base model; "
                                 "pass it as --adapter and give the base with --base")
        raise ModelFileError(f"{path.name} is not a loragui model file (format {str(fmt)[:40]!r}); "
                             "a base model is made with `loragui train --full`")
    try:
        arch = UNetConfig.from_dict(json_field(metadata, "architecture", path.name))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path.name}: invalid architecture: {exc}") from None
    prep = json_field(metadata, "preprocessing", path.name)
    from .preprocessing import Preprocessing

    try:
        Preprocessing.from_dict(prep)
    except LoraGuiError as exc:
        raise ModelFileError(f"{path.name}: {exc}") from None
    # Shapes first (from the header, against a model on the meta device): an architecture
    # that would need terabytes is refused here, before anything is allocated.
    _check_tensor_set(header, _expected_state(arch), path.name, arch)
    tensors = tensors_from(data, path.name)
    check_finite(tensors, path.name)
    model = UNet(arch)
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    info = BaseModelInfo(path, hashlib.sha256(data).hexdigest(), arch, prep,
                         {k: maybe_json(v) for k, v in metadata.items()})
    return model, info


def _check_tensor_set(header: dict[str, Any], expected: dict[str, tuple[int, ...]], name: str,
                      arch: UNetConfig | None = None) -> None:
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing and arch is not None and len(missing) > len(expected) // 2:
        raise ModelFileError(f"{name}: the architecture in its metadata ({arch_text(arch)}) does "
                             f"not match its tensors: {len(missing)} of its {len(expected)} "
                             f"tensors are missing, e.g. {missing[:3]}")
    if missing:
        raise ModelFileError(f"{name} is missing {len(missing)} tensor(s), e.g. {missing[:3]}")
    if unexpected:
        raise ModelFileError(f"{name} has {len(unexpected)} unexpected tensor(s), e.g. {unexpected[:3]}")
    for key, shape in expected.items():
        info = header[key]
        if tuple(info["shape"]) != tuple(shape):
            raise ModelFileError(f"{name}: tensor {key!r} has shape {tuple(info['shape'])}, "
                                 f"expected {tuple(shape)}")
        if info["dtype"] not in FLOAT_DTYPES:
            raise ModelFileError(f"{name}: tensor {key!r} has dtype {info['dtype']}, expected a float type")


def arch_text(arch: dict[str, Any] | UNetConfig) -> str:
    d = arch.to_dict() if isinstance(arch, UNetConfig) else arch
    return ", ".join(f"{k} {d.get(k)}" for k in ("width", "depth", "in_channels", "out_channels"))


def bundled_base_for(adapter: Adapter) -> Path | None:
    """The bundled base model an adapter was trained on (by its recorded SHA-256)."""
    want = adapter.loragui.get("base_sha256")
    return bundled_base_with_sha256(want) if isinstance(want, str) else None


def resolve_base(base: str | os.PathLike | None, *, device_type: str | None = None,
                 adapter: Adapter | None = None) -> Path:
    """``base``, or the bundled base model: the one ``adapter`` was trained on, else the
    one for ``device_type`` (see :func:`bundled_base_path`)."""
    if base:
        return Path(base)
    bundled = bundled_base_for(adapter) if adapter is not None else None
    bundled = bundled or bundled_base_path(device_type)
    if bundled is None:
        raise ModelFileError("no base model given and none is bundled with this installation; "
                             "pass --base FILE (make one with `loragui train --full`)")
    return bundled
