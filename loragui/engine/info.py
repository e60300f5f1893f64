"""Describing a file: what kind it is, whether PEFT can load an adapter, and everything
``loragui info`` and the window show about it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .adapter_plan import plan_adapter
from .adapters import Adapter, load_adapter
from .basemodel import load_model
from .errors import ModelFileError
from .formats import ADAPTER_CONFIG, ADAPTER_FORMAT, ADAPTER_WEIGHTS, BASE_FORMAT, MERGED_FORMAT
from .safetensors_file import read_safetensors_header
from .unet import UNet, UNetConfig


def file_kind(path: str | os.PathLike) -> str:
    """``"adapter"``, ``"base model"`` or ``"merged model"`` from a cheap look at the file."""
    path = Path(path)
    if path.is_dir():
        if (path / ADAPTER_CONFIG).exists() or (path / ADAPTER_WEIGHTS).exists():
            return "adapter"
        raise ModelFileError(f"{path} is a folder but not an adapter folder (no {ADAPTER_CONFIG})")
    _, metadata = read_safetensors_header(path)
    if "adapter_config" in metadata or metadata.get("format") == ADAPTER_FORMAT:
        return "adapter"
    if metadata.get("format") == MERGED_FORMAT:
        return "merged model"
    if metadata.get("format") == BASE_FORMAT:
        return "base model"
    raise ModelFileError(f"{path.name} is neither a loragui model nor an adapter (format "
                         f"{str(metadata.get('format'))[:40]!r})")


def adapter_peft_status(ad: Adapter) -> tuple[bool | None, list[str], str]:
    """``(peft_loadable, conv_transpose_layers, note)``. Where the adapter records its
    architecture the answer comes from the layers themselves (checked on a model
    on the meta device); an adapter PEFT wrote is loadable by definition."""
    section = ad.loragui
    arch = section.get("architecture")
    if arch is not None:
        with torch.device("meta"):
            model = UNet(UNetConfig.from_dict(arch))
        shapes = {k: tuple(v.shape) for k, v in ad.tensors.items()}
        transposed = plan_adapter(model, ad.config, shapes, ad.source.name).transposed
    elif section:
        transposed = list(section.get("conv_transpose_layers") or [])
    else:
        transposed = []
    if transposed:
        return False, transposed, (
            f"LoRA also covers ConvTranspose2d layers ({', '.join(transposed)}), which PEFT cannot "
            "load; `loragui export ADAPTER --out DEST --peft` writes a copy PEFT loads (their "
            "updates folded into full weights under modules_to_save)")
    folded = section.get("folded_conv_transpose_layers") or []
    if folded:
        return True, [], (f"PEFT-loadable; the ConvTranspose2d layers {', '.join(folded)} are "
                          "stored as full weights (modules_to_save)")
    return True, [], "PEFT-loadable (LoRA on Conv2d layers only)"


def read_model_info(path: str | os.PathLike) -> dict[str, Any]:
    """What a file is and where it came from: for ``loragui info`` and the window.

    Reading checks the file as strictly as loading it for use does.
    """
    path = Path(path)
    if path.suffix.lower() == ".zip":
        from .bioimageio_read import is_package, package_info

        if not is_package(path):
            raise ModelFileError(f"{path.name} is not a bioimage.io model package (a zip "
                                 "holding rdf.yaml)")
        return package_info(path)
    if path.is_dir():
        if not (path / ADAPTER_CONFIG).exists() and not (path / ADAPTER_WEIGHTS).exists():
            raise ModelFileError(f"{path} is a folder, not a model file or an adapter folder "
                                 f"(it holds no {ADAPTER_CONFIG})")
        is_adapter = True
    else:
        _, metadata = read_safetensors_header(path) if (path.exists() or path.is_symlink()) \
            else (None, {})
        is_adapter = "adapter_config" in metadata or metadata.get("format") == ADAPTER_FORMAT
    if is_adapter:
        ad = load_adapter(path)
        loadable, transposed, note = adapter_peft_status(ad)
        section = dict(ad.loragui)
        for key in ("format", "conv_transpose_layers", "peft_loadable"):
            section.pop(key, None)
        weights = path / ADAPTER_WEIGHTS if path.is_dir() else path
        return {
            "kind": "adapter", "path": str(path), "single_file": not path.is_dir(),
            "form": "PEFT folder" if path.is_dir() else "single file",
            "peft_loadable": loadable, "peft": note, "conv_transpose_layers": transposed,
            "rank": ad.config["r"], "alpha": ad.config["lora_alpha"],
            "rslora": bool(ad.config.get("use_rslora")), "bias": ad.config.get("bias", "none"),
            "rank_pattern": ad.config.get("rank_pattern") or {},
            "target_modules": ad.config["target_modules"],
            "modules_to_save": ad.config.get("modules_to_save"),
            "tensors": len(ad.tensors), "parameters": sum(t.numel() for t in ad.tensors.values()),
            "size_bytes": weights.stat().st_size,
            "provenance": "recorded by loragui" if section else "none (not written by loragui)",
            **section,
        }
    model, info = load_model(path)
    meta = dict(info.metadata)
    return {"kind": "merged model" if meta.get("format") == MERGED_FORMAT else "base model",
            "path": str(path), "sha256": info.sha256, "size_bytes": path.stat().st_size,
            "parameters": sum(p.numel() for p in model.parameters()), **meta}
