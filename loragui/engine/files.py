"""Base-model, adapter and merged-model files (safetensors + JSON only).

* Base model / merged model: one ``.safetensors`` file; its header metadata
  holds ``format`` (``loragui.base`` or ``loragui.merged``), the architecture and
  the preprocessing as JSON, plus provenance.
* Adapter: a folder in Hugging Face PEFT's layout, ``adapter_config.json`` +
  ``adapter_model.safetensors``, or a single ``.safetensors`` file with that
  config in its header metadata (``adapter_config``). Tensor names, verified
  against peft 0.21 in both directions (``tests/test_peft.py``):

  - ``base_model.model.<module>.lora_A.weight`` / ``...lora_B.weight``;
  - the bias of an adapted layer (config ``bias: "lora_only"``):
    ``base_model.model.<module>.base_layer.bias`` (what PEFT writes and loads;
    the older ``<module>.bias`` is accepted on load);
  - a module trained whole (``modules_to_save``): ``base_model.model.<module>.weight``
    / ``.bias``; PEFT loads these into its ``modules_to_save`` copy.

  The config carries a ``loragui`` section: base model SHA-256 and name,
  architecture, preprocessing, training settings, dataset size and fingerprint,
  validation metrics, loragui version, date, and whether PEFT can load the
  adapter (it cannot when LoRA covers ``ConvTranspose2d`` layers; see
  :func:`export_adapter` with ``peft_compatible=True``).

Nothing here unpickles anything. Every file is checked before tensors are
allocated: it must be a regular file (not a folder, device or pipe), the
header's declared sizes must fit the file exactly, and a base model's
architecture must match its tensors' shapes before the model is built. Every
problem is a :class:`ModelFileError` (``AdapterMismatchError`` for the wrong
base model) whose message says what is wrong.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import functools
import hashlib
import json
import math
import os
import re
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save_file
from torch import nn

from .. import __version__
from .atomic import atomic_folder, atomic_write, recover_folder
from .errors import AdapterMismatchError, LoraGuiError, ModelFileError
from .lora import LoRASettings, adapter_state_dict, inject_lora, lora_layers, strip_lora
from .unet import UNet, UNetConfig

BASE_FORMAT = "loragui.base"
MERGED_FORMAT = "loragui.merged"
ADAPTER_FORMAT = "loragui.adapter"
ADAPTER_FORMAT_VERSION = 1
PEFT_PREFIX = "base_model.model."
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MAX_HEADER_BYTES = 16 * 2**20  # a real header here is a few kB
MAX_CONFIG_BYTES = 4 * 2**20  # a real adapter_config.json is a few kB
MAX_NAMES = 4096  # entries in target_modules & co.; a UNet has a few dozen layers
MAX_NAME_LENGTH = 256  # characters in one module name or pattern
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
FLOAT_DTYPES = {"F32", "F16", "BF16", "F64"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- strict JSON

class _DuplicateKey(Exception):
    pass


class _BadConstant(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _bad_constant(name: str) -> Any:
    raise _BadConstant(name)


def parse_json(text: str, what: str) -> Any:
    """``json.loads`` that refuses duplicate keys, NaN/Infinity and absurd nesting,
    raising :class:`ModelFileError` naming ``what``."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_bad_constant)
    except _DuplicateKey as exc:
        raise ModelFileError(f"{what} has the key {exc.args[0]!r} twice; it is damaged or was "
                             "tampered with") from None
    except _BadConstant as exc:
        raise ModelFileError(f"{what} is not valid JSON: it holds {exc.args[0]}") from None
    except RecursionError:
        raise ModelFileError(f"{what} is not valid JSON: it is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and ints too long to convert
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ModelFileError(f"{what} is not valid JSON ({reason})") from None


# --------------------------------------------------------------------------- reading files

def _stat_regular(path: Path, what: str) -> None:
    """Refuse a missing path, a folder, or anything but a regular file, before opening it
    (a FIFO would block ``open``; ``/dev/zero`` never ends)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{what} {path} is not a regular file (a device, pipe or socket); "
                             "loragui reads only ordinary files")


def _read_file(path: Path, what: str, *, limit: int | None = None,
               head_only: bool = False) -> tuple[bytes, int]:
    """``(bytes, size)`` of a regular file: all of it, or its safetensors length field and
    header when ``head_only`` (nothing more when the declared length is implausible)."""
    _stat_regular(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ModelFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced between the stat and the open
            raise ModelFileError(f"{what} {path} is not a regular file")
        if limit is not None and st.st_size > limit:
            raise ModelFileError(f"{what} {path} is implausibly large ({st.st_size} bytes; "
                                 f"at most {limit} expected)")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            if head_only:
                head = fh.read(8)
                if len(head) == 8:
                    (n,) = struct.unpack("<Q", head)
                    if n <= min(MAX_HEADER_BYTES, st.st_size - 8):
                        head += fh.read(n)
                return head, st.st_size
            return fh.read(), st.st_size
    except OSError as exc:
        raise ModelFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _parse_header(data: bytes, size: int, name: str) -> tuple[dict[str, Any], dict[str, str], int]:
    """Check a safetensors header (``data`` holds at least the header). Returns
    ``(tensors, metadata, header_length)``."""
    if size < 8:
        raise ModelFileError(f"{name} is not a safetensors file: it is only {size} bytes long")
    head = data[:8]
    (n,) = struct.unpack("<Q", head)
    # A pickle starts with PROTO (0x80) and its protocol number, but so does a header
    # length of 0x280, 0x380 ... bytes: a safetensors header then follows, opening with "{".
    looks_like_header = n <= size - 8 and data[8:9] == b"{"
    if head[:1] == b"\x80" and head[1] in (2, 3, 4, 5) and not looks_like_header:
        raise ModelFileError(f"{name} is a Python pickle (an old PyTorch .pt/.bin file), not "
                             "safetensors; loragui never unpickles files, which can run code. "
                             "Convert it to safetensors first.")
    if head[:2] == b"PK":
        raise ModelFileError(f"{name} is a zip archive (a PyTorch .pt/.pth checkpoint holds "
                             "pickles), not safetensors; loragui never unpickles files. Convert "
                             "it to safetensors first.")
    if n > MAX_HEADER_BYTES:
        if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
            raise ModelFileError(f"{name} is not a safetensors file: it starts with text "
                                 f"({head.decode('ascii')!r}), not a header length")
        raise ModelFileError(f"{name} is damaged or not safetensors: its header claims {n} bytes, "
                             f"more than the {MAX_HEADER_BYTES} loragui accepts")
    if n > size - 8:
        raise ModelFileError(f"{name} is truncated or not safetensors: its header claims {n} bytes "
                             f"but only {size - 8} follow the length field")
    if n < 2:
        raise ModelFileError(f"{name} is damaged: its safetensors header is empty")
    try:
        text = data[8:8 + n].decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFileError(f"{name} is damaged: its safetensors header is not UTF-8 text") from None
    header = parse_json(text, f"the safetensors header of {name}")
    if not isinstance(header, dict):
        raise ModelFileError(f"{name} is damaged: its safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError(f"{name} is damaged: its header metadata (__metadata__) must map "
                             "names to strings")
    data_len = size - 8 - n
    spans = []
    for key, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ModelFileError(f"{name}: tensor entry {key!r} is malformed (it needs exactly "
                                 "dtype, shape and data_offsets)")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            raise ModelFileError(f"{name}: tensor {key!r} has an unknown dtype {str(dtype)[:40]!r}")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise ModelFileError(f"{name}: tensor {key!r} has an invalid shape {str(shape)[:80]} "
                                 "(it must be a list of at most 8 non-negative integers)")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise ModelFileError(f"{name}: tensor {key!r} has invalid data offsets {str(offsets)[:80]}")
        nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
        start, end = offsets
        if nbytes > data_len:
            raise ModelFileError(f"{name} is damaged: tensor {key!r} of shape {shape} ({dtype}) "
                                 f"would need {nbytes} bytes but the file holds only {data_len} "
                                 "bytes of data")
        if not 0 <= start <= end <= data_len:
            raise ModelFileError(f"{name} is truncated or damaged: tensor {key!r} declares bytes "
                                 f"{start}..{end} but the file holds only {data_len} bytes of data")
        if end - start != nbytes:
            raise ModelFileError(f"{name} is damaged: tensor {key!r} of shape {shape} ({dtype}) needs "
                                 f"{nbytes} bytes but its offsets span {end - start}")
        spans.append((start, end, key))
    spans.sort()
    position = 0
    for start, end, key in spans:
        if start < position:
            raise ModelFileError(f"{name} is damaged: the data of tensor {key!r} overlaps "
                                 "another tensor's")
        if start > position:
            raise ModelFileError(f"{name} is damaged: {start - position} unused bytes lie before "
                                 f"tensor {key!r}")
        position = end
    if position != data_len:
        raise ModelFileError(f"{name} is damaged: {data_len - position} bytes follow the last tensor")
    return header, metadata, n


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse and check a safetensors header without reading tensor data.

    Returns ``(tensors, metadata)`` where ``tensors`` maps names to
    ``{"dtype", "shape", "data_offsets"}``. Raises :class:`ModelFileError` when
    the path is not a regular file, the file is not safetensors, the header is
    oversized or malformed, or the declared tensors do not fill the file exactly.
    """
    path = Path(path)
    data, size = _read_file(path, "file", head_only=True)
    header, metadata, _ = _parse_header(data, size, path.name)
    return header, metadata


def _load_checked(path: Path, what: str) -> tuple[dict[str, Any], dict[str, str], bytes]:
    """Checked header, metadata and raw bytes of a safetensors file. The header is checked
    before the rest is read (a large file that is not safetensors is never read whole),
    and again on the bytes read (the file may have changed in between)."""
    head, size = _read_file(path, what, head_only=True)
    _parse_header(head, size, path.name)
    data, size = _read_file(path, what)
    if len(data) != size:
        raise ModelFileError(f"{path.name} changed while it was being read; try again")
    header, metadata, _ = _parse_header(data, size, path.name)
    return header, metadata, data


def _tensors_from(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """Tensors from safetensors bytes whose header has been checked (no pickle involved)."""
    try:
        return _st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"{name} could not be read as safetensors: {exc}") from None


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Check the header, then load every tensor on the CPU (no pickle involved)."""
    path = Path(path)
    _, metadata, data = _load_checked(path, "file")
    return _tensors_from(data, path.name), metadata


def _json_field(metadata: dict[str, str], key: str, name: str, required: bool = True) -> Any:
    raw = metadata.get(key)
    if raw is None:
        if required:
            raise ModelFileError(f"{name} lacks the {key!r} entry in its metadata; "
                                 "it was not written by loragui")
        return None
    return parse_json(raw, f"{name}: metadata entry {key!r}")


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
    header, metadata, data = _load_checked(path, "base model")
    fmt = metadata.get("format")
    if fmt not in (BASE_FORMAT, MERGED_FORMAT):
        if fmt == ADAPTER_FORMAT or "adapter_config" in metadata:
            raise ModelFileError(f"{path.name} is an adapter, not a base model; "
                                 "pass it as --adapter and give the base with --base")
        raise ModelFileError(f"{path.name} is not a loragui model file (format {str(fmt)[:40]!r}); "
                             "a base model is made with `loragui train --full`")
    try:
        arch = UNetConfig.from_dict(_json_field(metadata, "architecture", path.name))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path.name}: invalid architecture: {exc}") from None
    prep = _json_field(metadata, "preprocessing", path.name)
    from .preprocessing import Preprocessing

    try:
        Preprocessing.from_dict(prep)
    except LoraGuiError as exc:
        raise ModelFileError(f"{path.name}: {exc}") from None
    # Shapes first (from the header, against a model on the meta device): an architecture
    # that would need terabytes is refused here, before anything is allocated.
    _check_tensor_set(header, _expected_state(arch), path.name, arch)
    tensors = _tensors_from(data, path.name)
    check_finite(tensors, path.name)
    model = UNet(arch)
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    info = BaseModelInfo(path, hashlib.sha256(data).hexdigest(), arch, prep,
                         {k: _maybe_json(v) for k, v in metadata.items()})
    return model, info


def _maybe_json(value: str) -> Any:
    try:
        return parse_json(value, "metadata")
    except ModelFileError:
        return value


def _check_tensor_set(header: dict[str, Any], expected: dict[str, tuple[int, ...]], name: str,
                      arch: UNetConfig | None = None) -> None:
    missing = sorted(set(expected) - set(header))
    unexpected = sorted(set(header) - set(expected))
    if missing and arch is not None and len(missing) > len(expected) // 2:
        raise ModelFileError(f"{name}: the architecture in its metadata ({_arch_text(arch)}) does "
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


# --------------------------------------------------------------------------- resources

def resources_dir() -> Path:
    """The bundled resources (in the wheel: ``loragui/resources``; in a checkout: ``resources/``)."""
    try:
        import loragui.resources as res

        return Path(res.__file__).resolve().parent
    except ImportError:
        return Path(__file__).resolve().parents[2] / "resources"


SMALL_BASE = "loragui-base-small.safetensors"
MEDIUM_BASE = "loragui-base-medium.safetensors"


def bundled_base_path(device_type: str | None = None) -> Path | None:
    """The bundled base model to train on: the medium one on a GPU (``"cuda"``,
    ``"mps"``), where it scores higher at little cost; the small one on the CPU or
    when the device is not known (a CPU trains it several times faster)."""
    names = [MEDIUM_BASE, SMALL_BASE] if device_type in ("cuda", "mps") else [SMALL_BASE]
    for name in names:
        path = resources_dir() / "base" / name
        if path.is_file():
            return path
    return None


def bundled_bases() -> list[Path]:
    return [p for p in (resources_dir() / "base" / n for n in (SMALL_BASE, MEDIUM_BASE))
            if p.is_file()]


@functools.lru_cache(maxsize=8)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def bundled_base_for(adapter: Adapter) -> Path | None:
    """The bundled base model an adapter was trained on (by its recorded SHA-256)."""
    want = adapter.loragui.get("base_sha256")
    if not isinstance(want, str):
        return None
    for path in bundled_bases():
        st = path.stat()
        if _cached_sha256(str(path), st.st_size, st.st_mtime_ns) == want:
            return path
    return None


def bundled_sample_dirs() -> tuple[Path, Path] | None:
    root = resources_dir() / "sample"
    images, masks = root / "images", root / "masks"
    return (images, masks) if images.is_dir() and masks.is_dir() else None


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


# --------------------------------------------------------------------------- adapter config

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
    if not 1 <= r <= 4096:
        raise bad(f"rank r={r} is out of range (1..4096)")
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
            if kind == "rank" and (not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 4096):
                raise bad(f"rank_pattern[{layer!r}] = {str(v)[:40]} is not a rank (1..4096)")
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
    if "peft_loadable" in section and not isinstance(section["peft_loadable"], bool):
        raise bad("peft_loadable must be true or false")
    for key in ("conv_transpose_layers", "folded_conv_transpose_layers"):
        if key in section and not (isinstance(section[key], list)
                                   and all(isinstance(v, str) for v in section[key])):
            raise bad(f"{key} must be a list of module names")


# --------------------------------------------------------------------------- adapter files

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
        raw = _read_file(cfg_path, "adapter config", limit=MAX_CONFIG_BYTES)[0]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFileError(f"{path.name}/{ADAPTER_CONFIG} is not UTF-8 text") from None
        config = parse_json(text, f"{path.name}/{ADAPTER_CONFIG}")
        header, metadata, data = _load_checked(weights, "adapter weights")
    elif path.exists() or path.is_symlink():
        header, metadata, data = _load_checked(path, "adapter")
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
    tensors = _tensors_from(data, path.name)
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


# --------------------------------------------------------------------------- adapter vs model

def _match(name: str, pattern: str) -> bool:
    """PEFT's matching of a module-list entry (exact or dotted suffix), plus fnmatch."""
    return name == pattern or name.endswith("." + pattern) or fnmatch.fnmatchcase(name, pattern)


def _pattern_key(patterns: dict[str, Any], name: str) -> str | None:
    for key in patterns:
        if key == name:
            return key
    for key in patterns:
        if name.endswith("." + key):
            return key
    for key in patterns:
        if fnmatch.fnmatchcase(name, key):
            return key
    return None


def _few(names: list[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


@dataclass
class AdapterPlan:
    """How an adapter maps onto a model: which layers get LoRA, their ranks and
    alphas, and the model-relative name of every tensor in the adapter."""

    targets: list[str]
    transposed: list[str]
    ranks: dict[str, int]
    alphas: dict[str, float]
    modules_to_save: list[str]
    renames: dict[str, str]  # adapter tensor name -> model state_dict name (after injection)


def plan_adapter(model: nn.Module, config: dict[str, Any], shapes: dict[str, tuple[int, ...]],
                 name: str) -> AdapterPlan:
    """Check an adapter's config and tensor shapes against ``model`` (which may live on
    the meta device) without changing it; raise :class:`ModelFileError` saying what
    does not fit."""
    if any(True for _ in lora_layers(model)):
        raise ModelFileError("the model already carries LoRA layers; load a fresh base model")
    modules = {n: m for n, m in model.named_modules() if n}
    convs = {n: m for n, m in modules.items() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)}
    # modules trained whole
    saved: list[str] = []
    lacking = []
    for entry in config.get("modules_to_save") or []:
        hits = [n for n in modules if n == entry or n.endswith("." + entry)]
        if not hits:
            lacking.append(entry)
        saved += [h for h in hits if h not in saved]
    if lacking:
        raise ModelFileError(f"{name}: modules_to_save names module(s) this model lacks: "
                             f"{_few(lacking)}")
    saved_set = set(saved)
    # layers adapted with LoRA
    in_tensors = sorted({k.rsplit(".", 2)[0] for k in shapes
                         if k.endswith((".lora_A.weight", ".lora_B.weight"))})
    targets_cfg = config["target_modules"]
    if isinstance(targets_cfg, str):
        # PEFT reads a string as a regular expression; loragui does not evaluate
        # regular expressions from files, so the tensors say which layers are adapted.
        absent = [t for t in in_tensors if t not in convs]
        if absent:
            raise ModelFileError(f"{name} holds LoRA tensors for module(s) this model lacks or "
                                 f"that are not convolutions: {_few(absent)}")
        targets = list(in_tensors)
    else:
        targets, lacking, wrong_kind = [], [], []
        for entry in targets_cfg:
            # a wildcard (loragui's fnmatch patterns) skips modules trained whole
            hits = [n for n in convs if _match(n, entry) and (
                n not in saved_set or n == entry or n.endswith("." + entry))]
            if not hits:
                other = [n for n in modules if _match(n, entry)]
                if other:
                    wrong_kind.append(f"{entry} ({type(modules[other[0]]).__name__})")
                else:
                    lacking.append(entry)
            targets += [h for h in hits if h not in targets]
        if lacking:
            raise ModelFileError(f"{name}: target_modules names module(s) this model lacks: "
                                 f"{_few(lacking)}")
        if wrong_kind:
            raise ModelFileError(f"{name}: target_modules names module(s) that are not "
                                 f"convolutions: {_few(wrong_kind)}")
        exclude = config.get("exclude_modules") or []
        targets = [t for t in targets if not any(_match(t, e) for e in exclude)]
    both = sorted(set(targets) & saved_set)
    if both:
        raise ModelFileError(f"{name}: module(s) {_few(both)} are both LoRA targets and in "
                             "modules_to_save")
    if not targets:
        raise ModelFileError(f"{name}: target_modules selects no layer of this model")
    targets.sort()
    # ranks and alphas
    r, alpha = config["r"], float(config["lora_alpha"])
    rank_pattern, alpha_pattern = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    ranks, alphas, used_r, used_a = {}, {}, set(), set()
    for t in targets:
        key = _pattern_key(rank_pattern, t)
        groups = convs[t].groups
        declared = rank_pattern[key] if key is not None else r
        ranks[t] = int(math.ceil(declared / groups) * groups)
        used_r.add(key)
        key = _pattern_key(alpha_pattern, t)
        alphas[t] = float(alpha_pattern[key]) if key is not None else alpha
        used_a.add(key)
    for pattern, used, what in ((rank_pattern, used_r, "rank_pattern"),
                                (alpha_pattern, used_a, "alpha_pattern")):
        unused = sorted(set(pattern) - used)
        if unused:
            raise ModelFileError(f"{name}: {what} names layer(s) the adapter does not adapt: "
                                 f"{_few(unused)}")
    # expected tensors
    required: dict[str, tuple[int, ...]] = {}
    optional: dict[str, tuple[int, ...]] = {}
    renames: dict[str, str] = {}
    bias_mode = config.get("bias", "none")
    transposed = []
    for t in targets:
        conv, rank = convs[t], ranks[t]
        g, (kh, kw) = conv.groups, conv.kernel_size
        if isinstance(conv, nn.ConvTranspose2d):
            transposed.append(t)
            required[f"{t}.lora_A.weight"] = (conv.in_channels, rank // g, kh, kw)
        else:
            required[f"{t}.lora_A.weight"] = (rank, conv.in_channels // g, kh, kw)
        required[f"{t}.lora_B.weight"] = (conv.out_channels, rank // g, 1, 1)
        if conv.bias is not None:
            key = f"{t}.base_layer.bias"
            if f"{t}.bias" in shapes and key not in shapes:  # older PEFT naming
                renames[f"{t}.bias"] = key
            (required if bias_mode == "lora_only" else optional)[key] = (conv.out_channels,)
    for s in saved:
        for pname, tensor in modules[s].state_dict().items():
            required[f"{s}.{pname}"] = tuple(tensor.shape)
    if bias_mode == "all":
        for mname, module in modules.items():
            if mname in targets or mname in saved_set or getattr(module, "bias", None) is None:
                continue
            if any(mname.startswith(s + ".") for s in saved_set):
                continue
            if isinstance(module.bias, torch.Tensor) and not mname.endswith((".lora_A", ".lora_B")):
                optional[f"{mname}.bias"] = tuple(module.bias.shape)
    present = {renames.get(k, k): v for k, v in shapes.items()}
    missing = sorted(set(required) - set(present))
    if missing:
        raise ModelFileError(f"{name} is missing {len(missing)} tensor(s): {_few(missing, 3)}")
    allowed = {**optional, **required}
    unexpected = sorted(set(present) - set(allowed))
    if unexpected:
        biases = [k for k in unexpected if k.endswith(".base_layer.bias")]
        if biases and bias_mode == "none" and len(biases) == len(unexpected):
            raise ModelFileError(f"{name}: its config says bias 'none' but it holds {len(biases)} "
                                 f"bias tensor(s), e.g. {biases[0]}")
        raise ModelFileError(f"{name} holds {len(unexpected)} tensor(s) this model has no place "
                             f"for: {_few(unexpected, 3)}")
    if bias_mode == "none":
        biases = sorted(k for k in present if k.endswith(".base_layer.bias"))
        if biases:
            raise ModelFileError(f"{name}: its config says bias 'none' but it holds {len(biases)} "
                                 f"bias tensor(s), e.g. {biases[0]}")
    for key, shape in sorted(present.items()):
        want = allowed[key]
        if tuple(shape) == want:
            continue
        layer, _, part = key.rpartition(".lora_")
        if part in ("A.weight", "B.weight") and len(shape) == 4:
            # the rank is axis 0 of a Conv2d's lora_A, else axis 1 (divided by groups)
            axis = 0 if part == "A.weight" and layer not in transposed else 1
            others = [s for i, s in enumerate(shape) if i != axis]
            if others == [s for i, s in enumerate(want) if i != axis]:
                got = shape[axis] * (convs[layer].groups if axis == 1 else 1)
                raise ModelFileError(
                    f"{name}: layer {layer} has rank {got} in its lora_{part[0]} tensor but the "
                    f"config says rank {ranks[layer]} (r or rank_pattern disagrees with the tensors)")
        raise ModelFileError(f"{name}: tensor {key!r} has shape {tuple(shape)}, expected {want}")
    return AdapterPlan(targets, transposed, ranks, alphas, saved, renames)


def _arch_text(arch: dict[str, Any] | UNetConfig) -> str:
    d = arch.to_dict() if isinstance(arch, UNetConfig) else arch
    return ", ".join(f"{k} {d.get(k)}" for k in ("width", "depth", "in_channels", "out_channels"))


def check_base(adapter: Adapter, base: BaseModelInfo | None, model: nn.Module | None = None,
               *, force: bool = False) -> list[str]:
    """Refuse an adapter made for another base model. An architecture that differs is
    always refused (the shapes differ); a different SHA-256 only without ``force``."""
    warnings: list[str] = []
    section = adapter.loragui
    if not section:
        return warnings
    made_for = section.get("base_name") or "an unnamed base model"
    arch = section.get("architecture")
    have = base.architecture if base is not None else getattr(model, "config", None)
    base_label = base.name if base is not None else "this model"
    if arch is not None and isinstance(have, UNetConfig) and \
            UNetConfig.from_dict(arch).to_dict() != have.to_dict():
        raise AdapterMismatchError(
            f"adapter {adapter.name} was made for base model {made_for} ({_arch_text(arch)}), "
            f"but {base_label} has {_arch_text(have)}; the shapes differ, so it cannot be "
            "applied (not even with --force): use the base model it was trained on")
    want = section.get("base_sha256")
    if want and base is not None and want != base.sha256:
        merged = " (a merged model: it already holds an adapter)" \
            if base.metadata.get("format") == MERGED_FORMAT else ""
        msg = (f"adapter {adapter.name} was made for base model {made_for} (SHA-256 {want[:12]}…), "
               f"not {base.name}{merged} (SHA-256 {base.sha256[:12]}…)")
        if not force:
            raise AdapterMismatchError(msg + "; use that base model, or --force if you are sure "
                                             "(allowed only where the shapes match)")
        warnings.append(msg + "; applied anyway (--force)")
    return warnings


def apply_adapter(model: UNet, adapter: Adapter, base: BaseModelInfo | None = None,
                  *, force: bool = False) -> list[str]:
    """Inject LoRA layers into ``model`` as the adapter describes and load its tensors.

    Refuses an adapter made for another base model (SHA-256 or architecture)
    unless ``force`` is set and every shape matches; refuses tensors that are
    missing, unexpected, or whose shapes disagree with the config. Returns warnings.
    """
    return _apply(model, adapter, base, force)[0]


def _apply(model: UNet, adapter: Adapter, base: BaseModelInfo | None,
           force: bool) -> tuple[list[str], AdapterPlan]:
    warnings = check_base(adapter, base, model, force=force)
    shapes = {k: tuple(v.shape) for k, v in adapter.tensors.items()}
    plan = plan_adapter(model, adapter.config, shapes, adapter.source.name)
    settings = LoRASettings(
        rank=int(adapter.config["r"]), alpha=float(adapter.config["lora_alpha"]),
        rslora=bool(adapter.config.get("use_rslora") or False), targets=plan.targets,
        rank_pattern=dict(plan.ranks), alpha_pattern=dict(plan.alphas))
    try:
        inject_lora(model, settings)
    except (ValueError, TypeError) as exc:
        raise AdapterMismatchError(f"adapter {adapter.name} does not fit this model: {exc}") from None
    state = {plan.renames.get(k, k): v for k, v in adapter.tensors.items()}
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:  # plan_adapter checked every name; this would be a bug
        raise ModelFileError(f"{adapter.source.name}: tensors not loaded: {result.unexpected_keys[:3]}")
    for p in model.parameters():
        p.requires_grad_(False)
    return warnings, plan


# --------------------------------------------------------------------------- merged models, export

def merged_model(base_path: str | os.PathLike | None, adapter_path: str | os.PathLike,
                 *, force: bool = False) -> tuple[UNet, BaseModelInfo, Adapter, list[str]]:
    adapter = load_adapter(adapter_path)
    model, info = load_model(resolve_base(base_path, adapter=adapter))
    warnings = apply_adapter(model, adapter, info, force=force)
    strip_lora(model)
    return model, info, adapter, warnings


def _adapter_fingerprint(path: Path) -> str | None:
    weights = path / ADAPTER_WEIGHTS if path.is_dir() else path
    try:
        return sha256_file(weights)
    except OSError:
        return None


def merge_adapter_file(base: str | os.PathLike | None, adapter: str | os.PathLike,
                       out: str | os.PathLike, *, force: bool = False,
                       on_warning: Callable[[str], None] | None = None) -> Path:
    """Fold an adapter into its base model and write a merged-model file (a base-model
    file with ``format: loragui.merged`` and the adapter's provenance)."""
    model, info, ad, warnings = merged_model(base, adapter, force=force)
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
    _, plan = _apply(model, ad, info, force)
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
                                  if any(_match(t, k) for t in remaining)}
        config["alpha_pattern"] = {k: v for k, v in (config.get("alpha_pattern") or {}).items()
                                   if any(_match(t, k) for t in remaining)}
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
                   force: bool = False) -> Path:
    """Copy an adapter to ``dest`` as a PEFT folder or a single ``.safetensors`` file.

    With ``peft_compatible``, ``ConvTranspose2d`` updates are folded into
    ``modules_to_save`` weights (see :func:`peft_compatible_adapter`; needs the base
    model) so that ``peft.PeftModel.from_pretrained`` loads the folder.
    """
    ad = load_adapter(adapter_dir)
    if peft_compatible:
        tensors, config = peft_compatible_adapter(ad, base, force=force)
    else:
        tensors = {PEFT_PREFIX + k: v.contiguous() for k, v in ad.tensors.items()}
        config = ad.config
    if Path(dest).resolve() == Path(adapter_dir).resolve():
        raise ModelFileError("the export destination is the adapter itself; choose another path")
    return write_adapter(tensors, config, dest, single_file=single_file)


# --------------------------------------------------------------------------- describing files

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
