"""Base-model, adapter and merged-model files (safetensors + JSON only).

* Base model / merged model: one ``.safetensors`` file; its header metadata
  holds ``format`` (``loragui.base`` or ``loragui.merged``), the architecture and
  the preprocessing as JSON, plus provenance.
* Adapter: a folder in Hugging Face PEFT's layout, ``adapter_config.json`` +
  ``adapter_model.safetensors`` with keys ``base_model.model.<module>.lora_A.weight``
  and ``...lora_B.weight``; the config carries a ``loragui`` section (base model
  SHA-256, architecture, training settings, dataset, metrics). Or a single
  ``.safetensors`` file with that config in its header metadata.

Nothing here unpickles anything. Every file is checked before tensors are
allocated: the header's declared sizes must fit the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from .atomic import atomic_folder, atomic_write, recover_folder
from .errors import AdapterMismatchError, ModelFileError
from .lora import LoRASettings, adapter_state_dict, inject_lora, lora_layers, strip_lora
from .unet import UNet, UNetConfig

BASE_FORMAT = "loragui.base"
MERGED_FORMAT = "loragui.merged"
ADAPTER_FORMAT = "loragui.adapter"
PEFT_PREFIX = "base_model.model."
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MAX_HEADER_BYTES = 16 * 2**20  # a real header here is a few kB
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1}
FLOAT_DTYPES = {"F32", "F16", "BF16", "F64"}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- safetensors header

def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse and check a safetensors header without reading tensor data.

    Returns ``(tensors, metadata)`` where ``tensors`` maps names to
    ``{"dtype", "shape", "data_offsets"}``. Raises :class:`ModelFileError` when
    the file is not safetensors, the header is oversized or malformed, or the
    declared tensors do not fit exactly in the file.
    """
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ModelFileError(f"{name} is not a safetensors file: it is only {size} bytes long")
            if head[:2] == b"\x80\x04" or head[:1] == b"\x80" or head[:2] == b"PK":
                raise ModelFileError(f"{name} is a pickle/zip (PyTorch .pt) file, not safetensors; "
                                     "loragui never unpickles files. Convert it to safetensors first.")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or n > size - 8:
                raise ModelFileError(f"{name} is damaged or not safetensors: its header claims "
                                     f"{n} bytes but the file holds {size - 8} after the length field")
            raw = fh.read(n)
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{name} is damaged: its safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{name} is damaged: its safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError(f"{name} is damaged: its header metadata must map names to strings")
    data_len = size - 8 - n
    spans = []
    for key, info in header.items():
        if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"}:
            raise ModelFileError(f"{name}: tensor entry {key!r} is malformed")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_BYTES:
            raise ModelFileError(f"{name}: tensor {key!r} has unsupported dtype {dtype!r}")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise ModelFileError(f"{name}: tensor {key!r} has an invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise ModelFileError(f"{name}: tensor {key!r} has invalid data offsets {offsets!r}")
        nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
        start, end = offsets
        if not 0 <= start <= end <= data_len:
            raise ModelFileError(f"{name} is truncated or damaged: tensor {key!r} declares bytes "
                                 f"{start}..{end} but the file holds only {data_len} bytes of data")
        if end - start != nbytes:
            raise ModelFileError(f"{name} is damaged: tensor {key!r} of shape {shape} ({dtype}) needs "
                                 f"{nbytes} bytes but its offsets span {end - start}")
        spans.append((start, end))
    spans.sort()
    position = 0
    for start, end in spans:
        if start != position:
            raise ModelFileError(f"{name} is damaged: its tensors overlap or leave gaps")
        position = end
    if position != data_len:
        raise ModelFileError(f"{name} is damaged: {data_len - position} bytes follow the last tensor")
    return header, metadata


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Check the header, then load every tensor on the CPU (no pickle involved)."""
    _, metadata = read_safetensors_header(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"{Path(path).name} could not be read as safetensors: {exc}") from None
    return tensors, metadata


def _json_field(metadata: dict[str, str], key: str, name: str, required: bool = True) -> Any:
    raw = metadata.get(key)
    if raw is None:
        if required:
            raise ModelFileError(f"{name} lacks the {key!r} entry in its metadata; "
                                 "it was not written by loragui")
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ModelFileError(f"{name}: metadata entry {key!r} is not valid JSON") from None


def check_finite(tensors: dict[str, torch.Tensor], name: str) -> None:
    for key, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ModelFileError(f"{name}: tensor {key!r} holds NaN or infinite values")


# --------------------------------------------------------------------------- base models

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


def load_model(path: str | os.PathLike) -> tuple[UNet, BaseModelInfo]:
    """Load a base or merged model file into a UNet on the CPU, checking every tensor."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"base model {path} does not exist (or is not a file)")
    header, metadata = read_safetensors_header(path)
    fmt = metadata.get("format")
    if fmt not in (BASE_FORMAT, MERGED_FORMAT):
        if fmt == ADAPTER_FORMAT or "adapter_config" in metadata:
            raise ModelFileError(f"{path.name} is an adapter, not a base model; "
                                 "pass it as --adapter and give the base with --base")
        raise ModelFileError(f"{path.name} is not a loragui model file (format {fmt!r}); "
                             "a base model is made with `loragui train --full`")
    try:
        arch = UNetConfig.from_dict(_json_field(metadata, "architecture", path.name))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path.name}: invalid architecture: {exc}") from None
    prep = _json_field(metadata, "preprocessing", path.name)
    if not isinstance(prep, dict):
        raise ModelFileError(f"{path.name}: preprocessing must be a JSON object")
    model = UNet(arch)
    expected = {k: v for k, v in model.state_dict().items()}
    _check_tensor_set(header, {k: tuple(v.shape) for k, v in expected.items()}, path.name)
    tensors, _ = load_tensors(path)
    check_finite(tensors, path.name)
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    info = BaseModelInfo(path, sha256_file(path), arch, prep,
                         {k: _maybe_json(v) for k, v in metadata.items()})
    return model, info


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _check_tensor_set(header: dict[str, Any], expected: dict[str, tuple[int, ...]], name: str) -> None:
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
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


# --------------------------------------------------------------------------- resources

def resources_dir() -> Path:
    """The bundled resources (in the wheel: ``loragui/resources``; in a checkout: ``resources/``)."""
    try:
        import loragui.resources as res

        return Path(res.__file__).resolve().parent
    except ImportError:
        return Path(__file__).resolve().parents[2] / "resources"


def bundled_base_path() -> Path | None:
    path = resources_dir() / "base" / "loragui-base-small.safetensors"
    return path if path.is_file() else None


def bundled_sample_dirs() -> tuple[Path, Path] | None:
    root = resources_dir() / "sample"
    images, masks = root / "images", root / "masks"
    return (images, masks) if images.is_dir() and masks.is_dir() else None


def resolve_base(base: str | os.PathLike | None) -> Path:
    if base:
        return Path(base)
    bundled = bundled_base_path()
    if bundled is None:
        raise ModelFileError("no base model given and none is bundled with this installation; "
                             "pass --base FILE (make one with `loragui train --full`)")
    return bundled


# --------------------------------------------------------------------------- adapters

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
        return LoRASettings(
            rank=int(self.config["r"]), alpha=float(self.config["lora_alpha"]),
            rslora=bool(self.config.get("use_rslora", False)),
            targets=list(self.config["target_modules"]),
            rank_pattern=dict(self.config.get("rank_pattern") or {}),
            alpha_pattern=dict(self.config.get("alpha_pattern") or {}),
        )


def adapter_config(model: UNet, settings: LoRASettings, *, trained: list[str],
                   modules_to_save: list[str], loragui: dict[str, Any]) -> dict[str, Any]:
    """A PEFT ``adapter_config.json`` for the LoRA layers in ``model``, plus loragui's section."""
    layers = dict(lora_layers(model))
    ranks = {name: layer.rank for name, layer in layers.items()}
    alphas = {name: layer.alpha for name, layer in layers.items()}
    trained_biases = [n for n in trained if n.endswith(".bias") and ".base_layer." in n]
    transposed = sorted(name for name, layer in layers.items() if layer.transposed)
    section = dict(loragui)
    section.update({
        "format": ADAPTER_FORMAT,
        "format_version": 1,
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
        "modules_to_save": modules_to_save or None,
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


REQUIRED_CONFIG = {"peft_type": str, "r": int, "lora_alpha": (int, float), "target_modules": list}


def _validate_config(config: Any, name: str) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ModelFileError(f"{name}: the adapter config must be a JSON object")
    for key, types in REQUIRED_CONFIG.items():
        if key not in config:
            raise ModelFileError(f"{name}: the adapter config lacks the required field {key!r}")
        value = config[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise ModelFileError(f"{name}: adapter config field {key!r} has the wrong type "
                                 f"({type(value).__name__})")
    if config["peft_type"] != "LORA":
        raise ModelFileError(f"{name}: peft_type is {config['peft_type']!r}; only LORA adapters are supported")
    if not 1 <= config["r"] <= 4096:
        raise ModelFileError(f"{name}: rank r={config['r']} is out of range (1..4096)")
    if not math.isfinite(float(config["lora_alpha"])):
        raise ModelFileError(f"{name}: lora_alpha is not a finite number")
    if not all(isinstance(t, str) for t in config["target_modules"]) or not config["target_modules"]:
        raise ModelFileError(f"{name}: target_modules must be a non-empty list of module names")
    for key in ("rank_pattern", "alpha_pattern"):
        value = config.get(key) or {}
        if not isinstance(value, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()):
            raise ModelFileError(f"{name}: {key} must map module names to numbers")
    mts = config.get("modules_to_save")
    if mts is not None and (not isinstance(mts, list) or not all(isinstance(m, str) for m in mts)):
        raise ModelFileError(f"{name}: modules_to_save must be a list of module names or null")
    if "use_rslora" in config and not isinstance(config["use_rslora"], bool):
        raise ModelFileError(f"{name}: use_rslora must be true or false")
    if config.get("use_dora"):
        raise ModelFileError(f"{name}: DoRA adapters are not supported")
    if "loragui" in config and not isinstance(config["loragui"], dict):
        raise ModelFileError(f"{name}: the 'loragui' section must be a JSON object")
    return config


def load_adapter(path: str | os.PathLike) -> Adapter:
    """Read an adapter folder (PEFT layout) or a single adapter ``.safetensors`` file."""
    path = Path(path)
    if path.is_dir():
        recover_folder(path)
        cfg_path, weights = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
        if not cfg_path.is_file():
            raise ModelFileError(f"{path} holds no {ADAPTER_CONFIG}: it is not an adapter folder")
        if not weights.is_file():
            if (path / "adapter_model.bin").is_file():
                raise ModelFileError(f"{path} holds adapter_model.bin (pickle); loragui only loads "
                                     "safetensors. Save the adapter with safe_serialization=True.")
            raise ModelFileError(f"{path} holds no {ADAPTER_WEIGHTS}")
        try:
            if cfg_path.stat().st_size > MAX_HEADER_BYTES:
                raise ModelFileError(f"{cfg_path.name} is implausibly large")
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{path.name}/{ADAPTER_CONFIG} is not valid JSON ({exc})") from None
        header, _ = read_safetensors_header(weights)
        tensor_file = weights
    elif path.is_file():
        header, metadata = read_safetensors_header(path)
        if metadata.get("format") in (BASE_FORMAT, MERGED_FORMAT):
            raise ModelFileError(f"{path.name} is a full model, not an adapter; use it as --base")
        if "adapter_config" not in metadata:
            raise ModelFileError(f"{path.name} has no adapter_config in its metadata: "
                                 "it is not a loragui single-file adapter")
        try:
            config = json.loads(metadata["adapter_config"])
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{path.name}: its adapter_config metadata is not valid JSON ({exc})") from None
        tensor_file = path
    else:
        raise ModelFileError(f"adapter {path} does not exist")
    config = _validate_config(config, path.name)
    for key in header:
        if not key.startswith(PEFT_PREFIX):
            raise ModelFileError(f"{path.name}: unexpected tensor {key!r} "
                                 f"(adapter keys start with {PEFT_PREFIX!r})")
        if header[key]["dtype"] not in FLOAT_DTYPES:
            raise ModelFileError(f"{path.name}: tensor {key!r} has dtype {header[key]['dtype']}, "
                                 "expected a float type")
    tensors, _ = load_tensors(tensor_file)
    check_finite(tensors, path.name)
    tensors = {k[len(PEFT_PREFIX):]: v.float() for k, v in tensors.items()}
    return Adapter(config, tensors, path)


def _peft_name(key: str) -> str:
    # PEFT may save with the adapter name ("lora_A.default.weight") in some versions
    return key.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def apply_adapter(model: UNet, adapter: Adapter, base: BaseModelInfo | None = None,
                  *, force: bool = False) -> list[str]:
    """Inject LoRA layers into ``model`` as the adapter describes and load its tensors.

    Refuses an adapter made for another base model (SHA-256 or architecture)
    unless ``force`` is set and every shape matches. Returns warnings.
    """
    warnings: list[str] = []
    section = adapter.loragui
    name = adapter.source.name
    if base is not None and section:
        arch = section.get("architecture")
        if arch is not None and arch != base.architecture.to_dict():
            raise AdapterMismatchError(
                f"adapter {name} was made for a base model with architecture {arch}, but "
                f"{base.name} has {base.architecture.to_dict()}; use the base it was trained on")
        want = section.get("base_sha256")
        if want and want != base.sha256:
            msg = (f"adapter {name} was made for base model {section.get('base_name', '?')} "
                   f"(SHA-256 {str(want)[:12]}…), not {base.name} (SHA-256 {base.sha256[:12]}…)")
            if not force:
                raise AdapterMismatchError(msg + "; use that base model, or --force if you are sure")
            warnings.append(msg + "; applied anyway (--force)")
    tensors = {_peft_name(k): v for k, v in adapter.tensors.items()}
    settings = adapter.settings
    try:
        inject_lora(model, settings)
    except ValueError as exc:
        raise AdapterMismatchError(f"adapter {name} does not fit this model: {exc}") from None
    modules_to_save = adapter.config.get("modules_to_save") or []
    expected = {}
    state = model.state_dict()
    for lname, layer in lora_layers(model):
        expected[f"{lname}.lora_A.weight"] = tuple(layer.lora_A.weight.shape)
        expected[f"{lname}.lora_B.weight"] = tuple(layer.lora_B.weight.shape)
    optional = {}
    for key in state:
        owner = key.rsplit(".", 1)[0].removesuffix(".base_layer")
        if key.endswith(".bias") and ".base_layer." in key:
            optional[key] = tuple(state[key].shape)
        if any(owner == m or owner.startswith(m + ".") for m in modules_to_save):
            optional[key] = tuple(state[key].shape)
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ModelFileError(f"{name} is missing {len(missing)} LoRA tensor(s), e.g. {missing[:3]}")
    allowed = {**expected, **optional}
    unexpected = sorted(set(tensors) - set(allowed))
    if unexpected:
        raise ModelFileError(f"{name} has {len(unexpected)} tensor(s) this model has no place for, "
                             f"e.g. {unexpected[:3]}")
    for key, tensor in tensors.items():
        if tuple(tensor.shape) != allowed[key]:
            raise ModelFileError(f"{name}: tensor {key!r} has shape {tuple(tensor.shape)}, "
                                 f"expected {allowed[key]} (rank or alpha disagree with the tensors?)")
    model.load_state_dict(tensors, strict=False)
    for p in model.parameters():
        p.requires_grad_(False)
    return warnings


def merged_model(base_path: str | os.PathLike | None, adapter_path: str | os.PathLike,
                 *, force: bool = False) -> tuple[UNet, BaseModelInfo, Adapter, list[str]]:
    model, info = load_model(resolve_base(base_path))
    adapter = load_adapter(adapter_path)
    warnings = apply_adapter(model, adapter, info, force=force)
    strip_lora(model)
    return model, info, adapter, warnings


def merge_adapter_file(base: str | os.PathLike | None, adapter: str | os.PathLike,
                       out: str | os.PathLike, *, force: bool = False) -> Path:
    """Fold an adapter into its base model and write a merged-model file."""
    model, info, ad, _ = merged_model(base, adapter, force=force)
    return save_model(model, out, preprocessing=info.preprocessing, kind=MERGED_FORMAT, extra={
        "base_sha256": info.sha256, "base_name": info.name,
        "adapter": {k: v for k, v in ad.loragui.items() if k != "architecture"},
    })


def export_adapter(adapter_dir: str | os.PathLike, dest: str | os.PathLike, single_file: bool) -> Path:
    """Copy an adapter to ``dest`` as a PEFT folder or a single ``.safetensors`` file."""
    ad = load_adapter(adapter_dir)
    tensors = {PEFT_PREFIX + k: v.contiguous() for k, v in ad.tensors.items()}
    return write_adapter(tensors, ad.config, dest, single_file=single_file)


def read_model_info(path: str | os.PathLike) -> dict[str, Any]:
    """What a file is and where it came from: for ``loragui info`` and the window."""
    path = Path(path)
    if path.is_dir() or (path.is_file() and "adapter_config" in read_safetensors_header(path)[1]):
        ad = load_adapter(path)
        return {"kind": "adapter", "path": str(path),
                "single_file": path.is_file(), "rank": ad.config["r"], "alpha": ad.config["lora_alpha"],
                "target_modules": ad.config["target_modules"],
                "modules_to_save": ad.config.get("modules_to_save"),
                "tensors": len(ad.tensors), "parameters": sum(t.numel() for t in ad.tensors.values()),
                **ad.loragui}
    model, info = load_model(path)
    meta = dict(info.metadata)
    return {"kind": "merged model" if meta.get("format") == MERGED_FORMAT else "base model",
            "path": str(path), "sha256": info.sha256,
            "parameters": sum(p.numel() for p in model.parameters()), **meta}
