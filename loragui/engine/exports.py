"""Writing an adapter elsewhere: a copy (PEFT folder or single file), a copy PEFT can
load, or the adapter folded into its base model (a merged model)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .adapter_plan import apply_adapter, apply_adapter_plan, module_matches
from .adapters import Adapter, load_adapter, write_adapter
from .basemodel import BaseModelInfo, load_model, resolve_base, save_model
from .errors import ModelFileError
from .formats import ADAPTER_FORMAT, ADAPTER_WEIGHTS, MERGED_FORMAT, PEFT_PREFIX, sha256_file
from .lora import lora_layers, strip_lora
from .outputs import ADAPTER_DIR, FILE, Input, check_output, model_inputs
from .unet import UNet


def merged_model(base_path: str | os.PathLike | None, adapter_path: str | os.PathLike,
                 *, force: bool = False) -> tuple[UNet, BaseModelInfo, Adapter, list[str]]:
    """The base model with the adapter folded in; the info is the base model's with the
    preprocessing the adapter was trained with (it may invert the images: polarity.py)."""
    adapter = load_adapter(adapter_path)
    model, info = load_model(resolve_base(base_path, adapter=adapter))
    warnings = apply_adapter(model, adapter, info, force=force)
    strip_lora(model)
    trained = adapter.loragui.get("preprocessing")
    if trained is not None:
        info = dataclasses.replace(info, preprocessing=trained)
    return model, info, adapter, warnings


def _adapter_fingerprint(path: Path) -> str | None:
    weights = path / ADAPTER_WEIGHTS if path.is_dir() else path
    try:
        return sha256_file(weights)
    except OSError:
        return None


def merge_adapter_file(base: str | os.PathLike | None, adapter: str | os.PathLike,
                       out: str | os.PathLike, *, force: bool = False,
                       on_warning: Callable[[str], None] | None = None,
                       overwrite: bool = False) -> Path:
    """Fold an adapter into its base model and write a merged-model file (a base-model
    file with ``format: loragui.merged`` and the adapter's provenance)."""
    check_output(out, FILE, model_inputs(adapter, base), overwrite=overwrite,
                 replaces=MERGED_FORMAT)
    model, info, ad, warnings = merged_model(base, adapter, force=force)
    check_output(out, FILE, [Input("the base model", info.path)], overwrite=overwrite,
                 replaces=MERGED_FORMAT)
    for w in warnings:
        if on_warning is not None:
            on_warning(w)
    return save_model(model, out, preprocessing=info.preprocessing, kind=MERGED_FORMAT, extra={
        "base_sha256": info.sha256, "base_name": info.name,
        "adapter_sha256": _adapter_fingerprint(Path(adapter)),
        "adapter": {k: v for k, v in ad.loragui.items() if k != "architecture"},
    })


def peft_compatible_adapter(ad: Adapter, base: str | os.PathLike | None = None, *,
                            force: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors (PEFT names) and config of a copy of ``ad`` that PEFT can load.

    PEFT has no LoRA for ``ConvTranspose2d``: each such layer's update is folded
    into a full weight ``W + ΔW`` (exact) and stored as a ``modules_to_save``
    module, so the copy computes what the adapter computes. The base model is
    needed for ``W``; it must be the one the adapter was made for.
    """
    model, info = load_model(resolve_base(base, adapter=ad))
    _, plan = apply_adapter_plan(model, ad, info, force)
    layers = dict(lora_layers(model))
    fold = sorted(n for n, layer in layers.items() if layer.transposed)
    config = json.loads(json.dumps(ad.config))
    section = dict(config.get("loragui") or {})
    tensors = {plan.renames.get(k, k): v for k, v in ad.tensors.items()}  # PEFT 0.21's names
    if fold:
        if len(fold) == len(layers):
            raise ModelFileError(f"{ad.source.name} adapts only ConvTranspose2d layers: nothing "
                                 "would be left for PEFT's LoRA; export the merged model instead")
        with torch.no_grad():
            for n in fold:
                layer = layers[n]
                for key in list(tensors):
                    if key.startswith(n + ".") and key[len(n) + 1:] in (
                            "lora_A.weight", "lora_B.weight", "base_layer.bias"):
                        del tensors[key]
                tensors[f"{n}.weight"] = (layer.base_layer.weight + layer.delta_weight()).clone()
                if layer.base_layer.bias is not None:
                    tensors[f"{n}.bias"] = layer.base_layer.bias.detach().clone()
        remaining = sorted(set(layers) - set(fold))
        config["target_modules"] = remaining
        config["modules_to_save"] = sorted(set(config.get("modules_to_save") or []) | set(fold))
        config["rank_pattern"] = {k: v for k, v in (config.get("rank_pattern") or {}).items()
                                  if any(module_matches(t, k) for t in remaining)}
        config["alpha_pattern"] = {k: v for k, v in (config.get("alpha_pattern") or {}).items()
                                   if any(module_matches(t, k) for t in remaining)}
        config.pop("exclude_modules", None)
        section["folded_conv_transpose_layers"] = fold
    section["conv_transpose_layers"] = []
    section["peft_loadable"] = True
    if section.get("base_sha256") is None:
        section["base_sha256"] = info.sha256
        section["base_name"] = info.name
    config["loragui"] = section
    return {PEFT_PREFIX + k: v.contiguous() for k, v in tensors.items()}, config


def export_adapter(adapter_dir: str | os.PathLike, dest: str | os.PathLike, single_file: bool = False,
                   *, peft_compatible: bool = False, base: str | os.PathLike | None = None,
                   force: bool = False, overwrite: bool = False) -> Path:
    """Copy an adapter to ``dest`` as a PEFT folder or a single ``.safetensors`` file.

    With ``peft_compatible``, ``ConvTranspose2d`` updates are folded into
    ``modules_to_save`` weights (see :func:`peft_compatible_adapter`; needs the base
    model) so that ``peft.PeftModel.from_pretrained`` loads the folder.
    """
    kind = FILE if single_file else ADAPTER_DIR
    check_output(dest, kind, model_inputs(adapter_dir, base), overwrite=overwrite,
                 replaces=ADAPTER_FORMAT)
    ad = load_adapter(adapter_dir)
    if peft_compatible:
        tensors, config = peft_compatible_adapter(ad, base, force=force)
    else:
        tensors = {PEFT_PREFIX + k: v.contiguous() for k, v in ad.tensors.items()}
        config = ad.config
    return write_adapter(tensors, config, dest, single_file=single_file)
