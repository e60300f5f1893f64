"""Adapter files: the PEFT config loragui writes, its schema check, and saving and
loading an adapter (a PEFT folder or a single ``.safetensors`` file)."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .. import __version__
from .atomic import atomic_folder, atomic_write, recover_folder
from .config import MAX_RANK
from .errors import ModelFileError
from .formats import (
    ADAPTER_CONFIG,
    ADAPTER_FORMAT,
    ADAPTER_FORMAT_VERSION,
    ADAPTER_WEIGHTS,
    BASE_FORMAT,
    MERGED_FORMAT,
    PEFT_PREFIX,
    now_iso,
)
from .lora import LoRASettings, adapter_state_dict, lora_layers
from .maskkinds import MaskMeaning
from .safetensors_file import (
    FLOAT_DTYPES,
    check_finite,
    load_checked,
    parse_json,
    read_file,
    tensors_from,
)
from .unet import UNet, UNetConfig

MAX_CONFIG_BYTES = 4 * 2**20  # a real adapter_config.json is a few kB
MAX_NAMES = 4096  # entries in target_modules & co.; a UNet has a few dozen layers
MAX_NAME_LENGTH = 256  # characters in one module name or pattern
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Adapter:
    config: dict[str, Any]  # adapter_config.json as a dict (PEFT fields + "loragui" section)
    tensors: dict[str, torch.Tensor]  # model-relative names ("down.0.conv1.lora_A.weight")
    source: Path

    @property
    def loragui(self) -> dict[str, Any]:
        section = self.config.get("loragui")
        return section if isinstance(section, dict) else {}

    @property
    def settings(self) -> LoRASettings:
        targets = self.config["target_modules"]
        return LoRASettings(
            rank=int(self.config["r"]), alpha=float(self.config["lora_alpha"]),
            rslora=bool(self.config.get("use_rslora", False)),
            targets=list(targets) if isinstance(targets, list) else [],
            rank_pattern=dict(self.config.get("rank_pattern") or {}),
            alpha_pattern=dict(self.config.get("alpha_pattern") or {}),
        )

    @property
    def name(self) -> str:
        return str(self.source)


def adapter_config(model: UNet, settings: LoRASettings, *, trained: list[str],
                   modules_to_save: list[str], loragui: dict[str, Any]) -> dict[str, Any]:
    """A PEFT ``adapter_config.json`` for the LoRA layers in ``model``, plus loragui's section."""
    layers = dict(lora_layers(model))
    ranks = {name: layer.rank for name, layer in layers.items()}
    alphas = {name: layer.alpha for name, layer in layers.items()}
    trained_biases = [n for n in trained if n.endswith(".bias") and ".base_layer." in n]
    transposed = sorted(name for name, layer in layers.items() if layer.transposed)
    section = dict(loragui)
    section.setdefault("created", now_iso())
    section.update({
        "format": ADAPTER_FORMAT,
        "format_version": ADAPTER_FORMAT_VERSION,
        "loragui_version": __version__,
        "conv_transpose_layers": transposed,
        "peft_loadable": not transposed,
    })
    return {
        "peft_type": "LORA",
        "task_type": None,
        "r": settings.rank,
        "lora_alpha": settings.alpha,
        "target_modules": sorted(layers),
        "modules_to_save": sorted(modules_to_save) or None,
        "lora_dropout": settings.dropout,
        "bias": "lora_only" if trained_biases else "none",
        "use_rslora": settings.rslora,
        "use_dora": False,
        "rank_pattern": {k: v for k, v in ranks.items() if v != settings.rank},
        "alpha_pattern": {k: v for k, v in alphas.items() if v != settings.alpha},
        "init_lora_weights": True,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "base_model_name_or_path": None,
        "loragui": section,
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def _validate_config(config: Any, name: str) -> dict[str, Any]:
    """Check every field loragui uses (and PEFT's few that would change the meaning)."""
    def bad(msg: str) -> ModelFileError:
        return ModelFileError(f"{name}: {msg}")

    if not isinstance(config, dict):
        raise bad("the adapter config must be a JSON object")
    for key in ("peft_type", "r", "lora_alpha", "target_modules"):
        if key not in config:
            raise bad(f"the adapter config lacks the required field {key!r}")
    if not isinstance(config["peft_type"], str):
        raise bad(f"adapter config field 'peft_type' has the wrong type "
                  f"({type(config['peft_type']).__name__}; expected a string)")
    if config["peft_type"] != "LORA":
        raise bad(f"peft_type is {config['peft_type'][:40]!r}; only LORA adapters are supported")
    r = config["r"]
    if not isinstance(r, int) or isinstance(r, bool):
        raise bad(f"adapter config field 'r' (the rank) has the wrong type ({type(r).__name__}; "
                  "expected an integer)")
    if not 1 <= r <= MAX_RANK:
        raise bad(f"rank r={r} is out of range (1..{MAX_RANK})")
    alpha = config["lora_alpha"]
    if not _is_number(alpha):
        raise bad(f"adapter config field 'lora_alpha' has the wrong type ({type(alpha).__name__}; "
                  "expected a number)")
    if not math.isfinite(alpha) or alpha <= 0:
        raise bad(f"lora_alpha={alpha} must be a positive finite number")
    for key in ("target_modules", "modules_to_save", "exclude_modules", "rank_pattern",
                "alpha_pattern"):
        value = config.get(key)
        if isinstance(value, list | dict) and len(value) > MAX_NAMES:
            raise bad(f"{key} lists {len(value)} entries; at most {MAX_NAMES} are plausible")
        names = [value] if isinstance(value, str) else value if isinstance(value, list | dict) else []
        long = [n for n in names if isinstance(n, str) and len(n) > MAX_NAME_LENGTH]
        if long:
            raise bad(f"{key} holds a module name of {len(long[0])} characters; at most "
                      f"{MAX_NAME_LENGTH} are plausible")
    targets = config["target_modules"]
    if isinstance(targets, str):
        if not targets:
            raise bad("target_modules is empty")
    elif not _names(targets) or not targets:
        raise bad("target_modules must be a non-empty list of module names")
    for key, kind in (("rank_pattern", "rank"), ("alpha_pattern", "alpha")):
        value = config.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise bad(f"{key} must map module names to numbers, not {type(value).__name__}")
        for layer, v in value.items():
            if kind == "rank" and (not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_RANK):
                raise bad(f"rank_pattern[{layer!r}] = {str(v)[:40]} is not a rank (1..{MAX_RANK})")
            if kind == "alpha" and (not _is_number(v) or not math.isfinite(v) or v <= 0):
                raise bad(f"alpha_pattern[{layer!r}] = {str(v)[:40]} is not a positive number")
    mts = config.get("modules_to_save")
    if mts is not None and not _names(mts):
        raise bad("modules_to_save must be a list of module names or null")
    exclude = config.get("exclude_modules")
    if exclude is not None and not _names(exclude):
        raise bad("exclude_modules must be a list of module names or null (regular "
                  "expressions are not supported)")
    for key in ("use_rslora", "use_dora", "lora_bias"):
        if key in config and config[key] is not None and not isinstance(config[key], bool):
            raise bad(f"{key} must be true or false, not {type(config[key]).__name__}")
    if config.get("use_dora"):
        raise bad("DoRA adapters (use_dora) are not supported")
    if config.get("lora_bias"):
        raise bad("adapters with a LoRA bias (lora_bias) are not supported")
    if config.get("target_parameters"):
        raise bad("adapters on parameters (target_parameters) are not supported")
    for key in ("layers_to_transform", "layers_pattern"):
        if config.get(key) not in (None, [], ""):
            raise bad(f"{key} is not supported; list the adapted modules in target_modules")
    bias = config.get("bias", "none")
    if bias not in ("none", "lora_only", "all"):
        raise bad(f"bias must be 'none', 'lora_only' or 'all', not {str(bias)[:40]!r}")
    dropout = config.get("lora_dropout", 0.0)
    if dropout is not None and (not _is_number(dropout) or not 0 <= dropout < 1):
        raise bad(f"lora_dropout must be a number in [0, 1), not {str(dropout)[:40]}")
    if "loragui" in config:
        _validate_section(config["loragui"], name)
    return config


def _validate_section(section: Any, name: str) -> None:
    def bad(msg: str) -> ModelFileError:
        return ModelFileError(f"{name}: the loragui section's {msg}")

    if not isinstance(section, dict):
        raise ModelFileError(f"{name}: the 'loragui' section must be a JSON object")
    if section.get("format", ADAPTER_FORMAT) != ADAPTER_FORMAT:
        raise bad(f"format is {str(section['format'])[:40]!r}, not {ADAPTER_FORMAT!r}")
    version = section.get("format_version", ADAPTER_FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"format_version must be a positive integer, not {str(version)[:40]}")
    if version > ADAPTER_FORMAT_VERSION:
        raise ModelFileError(f"{name} was written by a newer loragui (adapter format {version}); "
                             "update loragui to load it")
    sha = section.get("base_sha256")
    if sha is not None and (not isinstance(sha, str) or not _SHA256.fullmatch(sha)):
        raise bad("base_sha256 must be 64 lowercase hexadecimal digits")
    for key in ("base_name", "loragui_version", "created"):
        if section.get(key) is not None and not isinstance(section[key], str):
            raise bad(f"{key} must be a string, not {type(section[key]).__name__}")
    arch = section.get("architecture")
    if arch is not None:
        if not isinstance(arch, dict):
            raise bad(f"architecture must be a JSON object, not {type(arch).__name__}")
        try:
            UNetConfig.from_dict(arch)
        except (ValueError, TypeError) as exc:
            raise bad(f"architecture is invalid: {exc}") from None
    for key in ("training", "dataset", "metrics", "base_metrics", "preprocessing"):
        if section.get(key) is not None and not isinstance(section[key], dict):
            raise bad(f"{key} must be a JSON object, not {type(section[key]).__name__}")
    if "masks" in section:
        try:
            MaskMeaning.from_dict(section["masks"])
        except ValueError as exc:
            raise bad(f"masks section is invalid: {exc}") from None
    if "peft_loadable" in section and not isinstance(section["peft_loadable"], bool):
        raise bad("peft_loadable must be true or false")
    for key in ("conv_transpose_layers", "folded_conv_transpose_layers"):
        if key in section and not (isinstance(section[key], list)
                                   and all(isinstance(v, str) for v in section[key])):
            raise bad(f"{key} must be a list of module names")


def save_adapter(model: UNet, config: dict[str, Any], dest: str | os.PathLike,
                 *, single_file: bool = False) -> Path:
    """Write the trainable tensors of ``model`` as a PEFT folder or one safetensors file."""
    tensors = {PEFT_PREFIX + k: v.detach().to("cpu", torch.float32).contiguous()
               for k, v in adapter_state_dict(model).items()}
    return write_adapter(tensors, config, dest, single_file=single_file)


def write_adapter(tensors: dict[str, torch.Tensor], config: dict[str, Any], dest: str | os.PathLike,
                  *, single_file: bool = False) -> Path:
    dest = Path(dest)
    text = json.dumps(config, indent=2, sort_keys=False)
    if single_file:
        return atomic_write(dest, lambda tmp: save_file(
            tensors, str(tmp), metadata={"format": ADAPTER_FORMAT, "adapter_config": text}))
    with atomic_folder(dest) as tmp:
        (tmp / ADAPTER_CONFIG).write_text(text + "\n", encoding="utf-8")
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    return dest


def load_adapter(path: str | os.PathLike) -> Adapter:
    """Read an adapter folder (PEFT layout) or a single adapter ``.safetensors`` file.

    Checks the files, the config's fields and the tensors' names, dtypes and
    values; :func:`apply_adapter` then checks the tensors against a model.
    """
    path = Path(path)
    try:
        recover_folder(path)
    except OSError:
        pass
    if path.is_dir():
        cfg_path, weights = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
        if not cfg_path.exists() and not cfg_path.is_symlink():
            raise ModelFileError(f"{path} holds no {ADAPTER_CONFIG}: it is not an adapter folder")
        if not weights.exists() and not weights.is_symlink():
            if (path / "adapter_model.bin").exists():
                raise ModelFileError(f"{path} holds adapter_model.bin (pickle); loragui only loads "
                                     "safetensors. Save the adapter with safe_serialization=True.")
            raise ModelFileError(f"{path} holds no {ADAPTER_WEIGHTS}")
        raw = read_file(cfg_path, "adapter config", limit=MAX_CONFIG_BYTES)[0]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{path.name}/{ADAPTER_CONFIG} is not UTF-8 text") from None
        config = parse_json(text, f"{path.name}/{ADAPTER_CONFIG}")
        header, metadata, data = load_checked(weights, "adapter weights")
    elif path.exists() or path.is_symlink():
        header, metadata, data = load_checked(path, "adapter")
        if metadata.get("format") in (BASE_FORMAT, MERGED_FORMAT):
            raise ModelFileError(f"{path.name} is a full model, not an adapter; use it as --base")
        if "adapter_config" not in metadata:
            raise ModelFileError(f"{path.name} has no adapter_config in its metadata: "
                                 "it is not a loragui single-file adapter")
        if len(metadata["adapter_config"]) > MAX_CONFIG_BYTES:
            raise ModelFileError(f"{path.name}: its adapter_config metadata is implausibly large "
                                 f"({len(metadata['adapter_config'])} characters)")
        config = parse_json(metadata["adapter_config"], f"{path.name}: its adapter_config metadata")
    else:
        raise ModelFileError(f"adapter {path} does not exist")
    config = _validate_config(config, path.name)
    if not header:
        raise ModelFileError(f"{path.name} holds no tensors")
    for key, info in header.items():
        if not key.startswith(PEFT_PREFIX):
            raise ModelFileError(f"{path.name}: unexpected tensor {key[:80]!r} "
                                 f"(adapter keys start with {PEFT_PREFIX!r})")
        if info["dtype"] not in FLOAT_DTYPES:
            raise ModelFileError(f"{path.name}: tensor {key!r} has dtype {info['dtype']}, "
                                 "expected a float type (F32, F16, BF16 or F64)")
    tensors = tensors_from(data, path.name)
    check_finite(tensors, path.name)
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        short = _peft_name(key[len(PEFT_PREFIX):])
        if short in out:
            raise ModelFileError(f"{path.name}: tensor {short!r} appears twice (with and without "
                                 "the adapter name)")
        out[short] = value.float()
    return Adapter(config, out, path)


def _peft_name(key: str) -> str:
    # PEFT may save with the adapter name ("lora_A.default.weight") in some versions
    return key.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
