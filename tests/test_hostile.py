"""Broken and hostile adapter and model files: each is refused with its own clear message.

The corpus is generated here (no binary blobs in the repository): truncated,
bit-flipped, oversized headers, shapes that would need terabytes, a pickle that
would run a command, zip checkpoints, wrong keys, NaN weights, config fields of the
wrong type, a symlink to /dev/zero, a FIFO, and so on. Every case is checked
through the loader API (``ModelFileError``, within a second, without loading
tensors when the header alone is bad) and through the command line (exit status
2, one ``loragui: error:`` line, no traceback): in-process for every case (the
same ``main()`` the ``loragui`` script runs) and in real subprocesses for a few.

A property-based test (hypothesis) mutates valid adapter files, bytes and JSON,
and checks the loader either loads them or raises ``ModelFileError``.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loragui.cli import main
from loragui.engine import adapters, safetensors_file
from loragui.engine.adapter_plan import apply_adapter
from loragui.engine.adapters import adapter_config, load_adapter, save_adapter, write_adapter
from loragui.engine.basemodel import load_model
from loragui.engine.errors import ModelFileError
from loragui.engine.exports import merged_model
from loragui.engine.formats import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX
from loragui.engine.lora import LoRASettings, inject_lora, set_extra_trainable
from loragui.engine.unet import UNet
from tests.tiny import make_tiny_base

# ----------------------------------------------------------------------------- file crafting


def st_parse(path: Path) -> tuple[dict, bytes]:
    """(header with __metadata__, data) of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def st_write(path: Path, header: dict | bytes, data: bytes, *, length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def make_adapter(base: Path, dest: Path, *, single: bool) -> Path:
    model, info = load_model(base)
    s = LoRASettings(rank=2, alpha=4, targets=["*"], exclude=["head"])
    inject_lora(model, s)
    trained = set_extra_trainable(model, biases=True, modules=["head"])
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    cfg = adapter_config(model, s, trained=trained, modules_to_save=["head"],
                         loragui={"base_sha256": info.sha256, "base_name": info.name,
                                  "architecture": model.config.to_dict()})
    return save_adapter(model, cfg, dest, single_file=single)


@dataclass
class Ctx:
    root: Path
    base: Path
    other: Path  # same architecture, other weights
    wide: Path  # another architecture
    single: Path  # a valid single-file adapter
    folder: Path  # a valid adapter folder
    wide_adapter: Path


@dataclass
class Case:
    name: str
    path: Path
    expect: str  # a phrase of the message
    use: str = "adapter"  # adapter | base | as_base (an adapter given as the base model)
    header_only: bool = False  # refused before any tensor is read


def _with_config(ctx: Ctx, dest: Path, change: Callable[[dict], None]) -> Path:
    header, data = st_parse(ctx.single)
    cfg = json.loads(header["__metadata__"]["adapter_config"])
    change(cfg)
    header["__metadata__"]["adapter_config"] = json.dumps(cfg)
    return st_write(dest, header, data)


def _with_tensors(ctx: Ctx, dest: Path, change: Callable[[dict], None],
                  cfg_change: Callable[[dict], None] | None = None) -> Path:
    ad = load_adapter(ctx.single)
    tensors = {PEFT_PREFIX + k: v.clone() for k, v in ad.tensors.items()}
    change(tensors)
    cfg = json.loads(json.dumps(ad.config))
    if cfg_change:
        cfg_change(cfg)
    return write_adapter(tensors, cfg, dest, single_file=True)


def _with_header(src: Path, dest: Path, change: Callable[[dict], None]) -> Path:
    header, data = st_parse(src)
    change(header)
    return st_write(dest, header, data)


def _folder_with(ctx: Ctx, dest: Path, *, config: bytes | None = None,
                 weights: Callable[[Path], None] | None = None) -> Path:
    dest.mkdir()
    (dest / ADAPTER_CONFIG).write_bytes(config if config is not None
                                        else (ctx.folder / ADAPTER_CONFIG).read_bytes())
    if weights is None:
        (dest / ADAPTER_WEIGHTS).write_bytes((ctx.folder / ADAPTER_WEIGHTS).read_bytes())
    else:
        weights(dest / ADAPTER_WEIGHTS)
    return dest


class Evil:
    """Unpickling this runs a shell command; loragui must never unpickle it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _first_key(header: dict, suffix: str) -> str:
    return next(k for k in header if k.endswith(suffix))


def build_corpus(ctx: Ctx) -> list[Case]:
    r = ctx.root
    good_raw = ctx.single.read_bytes()
    header, data = st_parse(ctx.single)
    n = struct.unpack("<Q", good_raw[:8])[0]
    a_key = _first_key(header, "down.0.conv1.lora_A.weight")
    cases: list[Case] = []

    def add(name, path, expect, use="adapter", header_only=False):
        cases.append(Case(name, path, expect, use, header_only))

    # --- bytes and safetensors structure
    (r / "empty.safetensors").write_bytes(b"")
    add("empty file", r / "empty.safetensors", "only 0 bytes long", header_only=True)
    (r / "trunc_data.safetensors").write_bytes(good_raw[:-100])
    add("truncated in the tensor data", r / "trunc_data.safetensors",
        "is truncated or damaged: the tensors its header declares do not fill", header_only=True)
    (r / "trunc_head.safetensors").write_bytes(good_raw[:8 + n // 2])
    add("truncated in the header", r / "trunc_head.safetensors",
        "is truncated or not safetensors: its header claims", header_only=True)
    st_write(r / "huge_header.safetensors", b"{}", b"", length=2**40)
    add("header length of 1 TiB", r / "huge_header.safetensors",
        "more than the 16777216 loragui accepts", header_only=True)
    (r / "text.safetensors").write_text("this is not a model, just some text\n")
    add("a text file renamed", r / "text.safetensors", "it starts with text", header_only=True)
    marker = r / "PWNED"
    (r / "bomb.safetensors").write_bytes(pickle.dumps(Evil(marker), protocol=4))
    add("pickle bomb renamed .safetensors", r / "bomb.safetensors", "is a Python pickle",
        header_only=True)
    torch.save({"w": torch.zeros(2)}, r / "ckpt.safetensors")
    add("torch.save zip checkpoint renamed", r / "ckpt.safetensors", "is a zip archive",
        header_only=True)
    flipped = bytearray(good_raw)
    flipped[8] ^= 0x40  # the header's opening "{" becomes ";"
    (r / "bitflip.safetensors").write_bytes(bytes(flipped))
    add("bit flipped in the header", r / "bitflip.safetensors",
        "is not valid JSON (Expecting value)", header_only=True)
    st_write(r / "not_object.safetensors", b'["a", "b"]', b"")
    add("header is a JSON list", r / "not_object.safetensors", "header is not a JSON object",
            header_only=True)
    st_write(r / "deep.safetensors", b"[" * 100_000 + b"]" * 100_000, b"")
    add("header nested 100,000 deep", r / "deep.safetensors", "nested too deeply",
        header_only=True)
    st_write(r / "latin1.safetensors", '{"caf\xe9": 1}'.encode("latin-1"), b"")
    add("header not UTF-8", r / "latin1.safetensors", "header is not UTF-8 text", header_only=True)
    raw_header = json.dumps(header).encode()
    dup = raw_header[:-1] + b', "' + a_key.encode() + b'": ' + json.dumps(header[a_key]).encode() + b"}"
    st_write(r / "dup_key.safetensors", dup, data)
    add("duplicate tensor name in the header", r / "dup_key.safetensors",
        f"has the key {a_key!r} twice", header_only=True)
    _with_header(ctx.single, r / "meta_list.safetensors", lambda h: h.update(__metadata__=["x"]))
    add("__metadata__ is not a dict", r / "meta_list.safetensors", "(__metadata__) must map",
        header_only=True)

    def terabytes(h):
        h[a_key]["shape"] = [2**20, 2**20, 1, 1]
    _with_header(ctx.single, r / "terabytes.safetensors", terabytes)
    add("shape that would allocate 4 TiB", r / "terabytes.safetensors",
        "a tensor's shape and dtype need a different number of bytes", header_only=True)
    _with_header(ctx.single, r / "neg_shape.safetensors",
                 lambda h: h[a_key].update(shape=[-2, 3, 3, 3]))
    add("negative dimension", r / "neg_shape.safetensors", "invalid shape [-2, 3, 3, 3]",
        header_only=True)
    _with_header(ctx.single, r / "float_shape.safetensors",
                 lambda h: h[a_key].update(shape=[2.5, 3, 3, 3]))
    add("fractional dimension", r / "float_shape.safetensors", "invalid shape [2.5, 3, 3, 3]",
        header_only=True)
    _with_header(ctx.single, r / "dtype.safetensors", lambda h: h[a_key].update(dtype="F128"))
    add("unknown dtype string", r / "dtype.safetensors", "unknown dtype 'F128'", header_only=True)

    def span(h):
        h[a_key]["data_offsets"][1] -= 4
    _with_header(ctx.single, r / "span.safetensors", span)
    add("offsets disagree with the shape", r / "span.safetensors", "than its data offsets span",
        header_only=True)

    def overlap(h):
        keys = sorted(k for k in h if k != "__metadata__")
        h[keys[1]]["data_offsets"] = list(h[keys[0]]["data_offsets"])
        h[keys[1]]["shape"], h[keys[1]]["dtype"] = h[keys[0]]["shape"], h[keys[0]]["dtype"]
    _with_header(ctx.single, r / "overlap.safetensors", overlap)
    add("two tensors share bytes", r / "overlap.safetensors", "overlaps another tensor",
        header_only=True)
    st_write(r / "trailing.safetensors", header, data + b"\0" * 64)
    add("bytes after the last tensor", r / "trailing.safetensors",
        "bytes are missing or left over", header_only=True)
    _with_header(ctx.single, r / "extra_field.safetensors",
                 lambda h: h[a_key].update(code="__import__('os')"))
    add("tensor entry with an extra field", r / "extra_field.safetensors",
        "is malformed (it needs exactly", header_only=True)

    # --- tensors
    _with_tensors(ctx, r / "nan.safetensors",
                  lambda t: t[a_key].view(-1).__setitem__(0, float("nan")))
    add("NaN weights", r / "nan.safetensors", "holds NaN or infinite values")
    inf_raw = bytearray(good_raw)
    start = 8 + n + header[a_key]["data_offsets"][0]
    inf_raw[start:start + 4] = struct.pack("<f", float("inf"))
    (r / "inf.safetensors").write_bytes(bytes(inf_raw))
    add("bit pattern of +inf in a weight", r / "inf.safetensors",
        f"tensor {a_key!r} holds NaN or infinite values")
    _with_tensors(ctx, r / "int.safetensors",
                  lambda t: t.__setitem__(a_key, t[a_key].to(torch.int32)))
    add("integer tensor", r / "int.safetensors", "has dtype I32, expected a float type")
    b_key = a_key.replace("lora_A", "lora_B")
    _with_tensors(ctx, r / "missing.safetensors", lambda t: t.pop(b_key))
    add("missing lora_B tensor", r / "missing.safetensors",
        "is missing 1 tensor(s): down.0.conv1.lora_B.weight")
    _with_tensors(ctx, r / "unexpected.safetensors",
                  lambda t: t.__setitem__(PEFT_PREFIX + "down.0.conv9.lora_A.weight",
                                          torch.zeros(2, 3, 3, 3)))
    add("unexpected tensor", r / "unexpected.safetensors",
        "holds 1 tensor(s) this model has no place for: down.0.conv9.lora_A.weight")
    _with_tensors(ctx, r / "prefix.safetensors",
                  lambda t: t.__setitem__("model.down.0.conv1.weight", torch.zeros(4, 3, 3, 3)))
    add("tensor outside base_model.model.", r / "prefix.safetensors",
        "unexpected tensor 'model.down.0.conv1.weight'", header_only=True)
    _with_tensors(ctx, r / "shape.safetensors",
                  lambda t: t.__setitem__(a_key, torch.zeros(2, 5, 3, 3)))
    add("wrong in-channels in lora_A", r / "shape.safetensors",
        "'down.0.conv1.lora_A.weight' has shape (2, 5, 3, 3), expected (2, 3, 3, 3)")
    _with_config(ctx, r / "rank.safetensors", lambda c: c.update(r=3))
    add("config rank 3, tensors rank 2", r / "rank.safetensors",
        "has rank 2 in its lora_A tensor but the config says rank 3")
    _with_config(ctx, r / "rank_pattern.safetensors",
                 lambda c: c.update(rank_pattern={"dec.1.conv2": 4}))
    add("rank_pattern disagrees with a layer's tensors", r / "rank_pattern.safetensors",
        "layer dec.1.conv2 has rank 2 in its lora_A tensor but the config says rank 4")
    _with_config(ctx, r / "pattern_names.safetensors",
                 lambda c: c.update(alpha_pattern={"encoder.9": 3.0}))
    add("alpha_pattern names a layer not adapted", r / "pattern_names.safetensors",
        "alpha_pattern names layer(s) the adapter does not adapt: encoder.9")
    _with_config(ctx, r / "targets.safetensors",
                 lambda c: c["target_modules"].append("encoder.7.attn"))
    add("target_modules names a module the model lacks", r / "targets.safetensors",
        "target_modules names module(s) this model lacks: encoder.7.attn")
    _with_config(ctx, r / "target_kind.safetensors",
                 lambda c: c["target_modules"].append("down.0"))
    add("target_modules names a non-convolution", r / "target_kind.safetensors",
        "not convolutions: down.0 (ConvBlock)")
    _with_config(ctx, r / "bias_none.safetensors", lambda c: c.update(bias="none"))
    add("bias 'none' but bias tensors present", r / "bias_none.safetensors",
        "config says bias 'none' but it holds 12 bias tensor(s)")

    # --- config fields
    _with_header(ctx.single, r / "cfg_json.safetensors",
                 lambda h: h["__metadata__"].update(adapter_config='{"r": 2,'))
    add("config metadata not valid JSON", r / "cfg_json.safetensors",
        "its adapter_config metadata is not valid JSON", header_only=True)
    _with_config(ctx, r / "cfg_no_r.safetensors", lambda c: c.pop("r"))
    add("config lacks r", r / "cfg_no_r.safetensors", "lacks the required field 'r'",
        header_only=True)
    _with_config(ctx, r / "cfg_r_str.safetensors", lambda c: c.update(r="2"))
    add("r is a string", r / "cfg_r_str.safetensors", "'r' (the rank) has the wrong type (str",
        header_only=True)
    _with_config(ctx, r / "cfg_r_bool.safetensors", lambda c: c.update(r=True))
    add("r is a boolean", r / "cfg_r_bool.safetensors", "'r' (the rank) has the wrong type (bool",
        header_only=True)
    _with_config(ctx, r / "cfg_alpha.safetensors", lambda c: c.update(lora_alpha=[4]))
    add("lora_alpha is a list", r / "cfg_alpha.safetensors",
        "'lora_alpha' has the wrong type (list", header_only=True)
    _with_header(ctx.single, r / "cfg_nan.safetensors", lambda h: h["__metadata__"].update(
        adapter_config=h["__metadata__"]["adapter_config"].replace('"lora_alpha": 4', '"lora_alpha": NaN')))
    add("lora_alpha is NaN", r / "cfg_nan.safetensors", "not valid JSON: it holds NaN",
        header_only=True)
    _with_config(ctx, r / "cfg_alpha0.safetensors", lambda c: c.update(lora_alpha=0))
    add("lora_alpha is 0", r / "cfg_alpha0.safetensors", "lora_alpha=0 must be a positive",
        header_only=True)
    _with_config(ctx, r / "cfg_mts.safetensors", lambda c: c.update(modules_to_save="head"))
    add("modules_to_save is a string", r / "cfg_mts.safetensors",
        "modules_to_save must be a list of module names or null", header_only=True)
    _with_config(ctx, r / "cfg_peft_type.safetensors", lambda c: c.update(peft_type="PREFIX_TUNING"))
    add("not a LoRA adapter", r / "cfg_peft_type.safetensors",
        "peft_type is 'PREFIX_TUNING'; only LORA", header_only=True)
    _with_config(ctx, r / "cfg_dora.safetensors", lambda c: c.update(use_dora=True))
    add("DoRA adapter", r / "cfg_dora.safetensors", "DoRA adapters (use_dora) are not supported",
        header_only=True)
    _with_config(ctx, r / "cfg_sha.safetensors", lambda c: c["loragui"].update(base_sha256=12))
    add("base_sha256 not a hash", r / "cfg_sha.safetensors",
        "base_sha256 must be 64 lowercase hexadecimal digits", header_only=True)
    _with_config(ctx, r / "cfg_arch.safetensors",
                 lambda c: c["loragui"].update(architecture={"width": "4"}))
    add("architecture field of the wrong type", r / "cfg_arch.safetensors",
        "architecture is invalid: architecture field 'width'", header_only=True)
    _with_config(ctx, r / "cfg_newer.safetensors", lambda c: c["loragui"].update(format_version=9))
    add("adapter from a newer loragui", r / "cfg_newer.safetensors",
        "written by a newer loragui (adapter format 9)", header_only=True)
    _with_config(ctx, r / "cfg_many.safetensors",
                 lambda c: c.update(target_modules=[f"m{i}" for i in range(5000)]))
    add("target_modules with 5000 entries", r / "cfg_many.safetensors",
        "target_modules lists 5000 entries", header_only=True)

    # --- folders
    _folder_with(ctx, r / "f_json", config=b'{"peft_type": "LORA", "r": 2')
    add("folder: adapter_config.json not valid JSON", r / "f_json",
        "f_json/adapter_config.json is not valid JSON", header_only=True)
    _folder_with(ctx, r / "f_dup", config=(ctx.folder / ADAPTER_CONFIG).read_bytes().replace(
        b'"r": 2,', b'"r": 2, "r": 64,'))
    add("folder: duplicate key in the config", r / "f_dup",
        "adapter_config.json has the key 'r' twice", header_only=True)
    _folder_with(ctx, r / "f_list", config=b"[1, 2, 3]")
    add("folder: config is a JSON list", r / "f_list", "the adapter config must be a JSON object",
        header_only=True)
    _folder_with(ctx, r / "f_big", config=b" " * (adapters.MAX_CONFIG_BYTES + 1))
    add("folder: 4 MiB config", r / "f_big", "adapter config", header_only=True)
    bin_dir = r / "f_bin"
    bin_dir.mkdir()
    (bin_dir / ADAPTER_CONFIG).write_bytes((ctx.folder / ADAPTER_CONFIG).read_bytes())
    (bin_dir / "adapter_model.bin").write_bytes(pickle.dumps(Evil(marker)))
    add("folder: pickle adapter_model.bin only", bin_dir, "adapter_model.bin (pickle)",
        header_only=True)
    if hasattr(os, "mkfifo"):
        _folder_with(ctx, r / "f_fifo", weights=lambda p: os.mkfifo(p))
        add("folder: weights file is a FIFO", r / "f_fifo",
            "adapter weights", header_only=True)
    if Path("/dev/zero").exists():
        _folder_with(ctx, r / "f_zero", weights=lambda p: p.symlink_to("/dev/zero"))
        add("folder: weights symlinked to /dev/zero", r / "f_zero",
            "is not a regular file (a device, pipe or socket)", header_only=True)
        (r / "zero.safetensors").symlink_to("/dev/zero")
        add("base model symlinked to /dev/zero", r / "zero.safetensors",
            "zero.safetensors is not a regular file", use="base", header_only=True)

    # --- wrong base model, swapped roles
    add("adapter for another base model (same shapes)", ctx.single,
        "was made for base model base.safetensors", use="adapter_other")
    add("adapter for another architecture", ctx.wide_adapter, "the shapes differ")
    add("adapter folder given as the base model", ctx.folder,
        "is an adapter folder, not a base model", use="as_base", header_only=True)
    add("base model given as the adapter", ctx.base, "is a full model, not an adapter",
        header_only=True)

    # --- base models
    def base_header(name, change):
        return _with_header(ctx.base, r / name, change)

    bh, _ = st_parse(ctx.base)
    w_key = "down.0.conv1.weight"
    base_header("b_arch_tb.safetensors", lambda h: h["__metadata__"].update(
        architecture=json.dumps({"width": 1024, "depth": 8})))
    add("base: architecture that would need terabytes", r / "b_arch_tb.safetensors",
        "(width 1024, depth 8, in_channels 3, out_channels 1) does not match its tensors",
        use="base", header_only=True)
    base_header("b_format.safetensors", lambda h: h["__metadata__"].pop("format"))
    add("base: no format entry", r / "b_format.safetensors", "is not a loragui model file",
        use="base", header_only=True)
    base_header("b_prep.safetensors", lambda h: h["__metadata__"].update(
        preprocessing=json.dumps({"channels": 7})))
    add("base: invalid preprocessing", r / "b_prep.safetensors",
        "channels must be 1 or 3, not 7", use="base", header_only=True)
    base_header("b_arch_type.safetensors", lambda h: h["__metadata__"].update(
        architecture=json.dumps({"width": [4]})))
    add("base: architecture width is a list", r / "b_arch_type.safetensors",
        "invalid architecture: architecture field 'width'", use="base", header_only=True)

    def base_extra(h):
        h["__metadata__"]["format"] = "loragui.base"
        h["down.0.conv1.weight"]["shape"] = [4, 3, 1, 9]
    base_header("b_shape.safetensors", base_extra)
    add("base: weight of the wrong shape", r / "b_shape.safetensors",
        "'down.0.conv1.weight' has shape (4, 3, 1, 9), expected (4, 3, 3, 3)", use="base",
        header_only=True)
    model, _ = load_model(ctx.base)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state[w_key].view(-1)[3] = float("-inf")
    from safetensors.torch import save_file
    meta = bh["__metadata__"]
    save_file(state, str(r / "b_inf.safetensors"), metadata=meta)
    add("base: -inf weight", r / "b_inf.safetensors", "'down.0.conv1.weight' holds NaN", use="base")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["down.0.conv1.extra"] = torch.zeros(1)
    save_file(state, str(r / "b_unexpected.safetensors"), metadata=meta)
    add("base: unexpected tensor", r / "b_unexpected.safetensors",
        "has 1 unexpected tensor(s), e.g. ['down.0.conv1.extra']", use="base", header_only=True)
    state = {k: (v * 100).to(torch.int64) for k, v in model.state_dict().items()}
    save_file(state, str(r / "b_int.safetensors"), metadata=meta)
    add("base: integer weights", r / "b_int.safetensors", "has dtype I64, expected a float type",
        use="base", header_only=True)
    (r / "b_trunc.safetensors").write_bytes(ctx.base.read_bytes()[:-1])
    add("base: one byte short", r / "b_trunc.safetensors",
        "is truncated or damaged", use="base", header_only=True)
    (r / "plain_dir").mkdir()
    add("base: a plain folder", r / "plain_dir", "is a folder, not a model file", use="base",
        header_only=True)
    add("base: does not exist", r / "nope.safetensors", "does not exist", use="base",
        header_only=True)
    return cases


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> Ctx:
    root = tmp_path_factory.mktemp("hostile")
    base = make_tiny_base(root / "base.safetensors", 4, 2, seed=0)
    other = make_tiny_base(root / "other.safetensors", 4, 2, seed=1)
    wide = make_tiny_base(root / "wide.safetensors", 8, 2, seed=0)
    torch.manual_seed(0)
    single = make_adapter(base, root / "good.safetensors", single=True)
    folder = make_adapter(base, root / "good_folder", single=False)
    wide_adapter = make_adapter(wide, root / "wide_adapter.safetensors", single=True)
    return Ctx(root, base, other, wide, single, folder, wide_adapter)


@pytest.fixture(scope="module")
def corpus(ctx) -> list[Case]:
    return build_corpus(ctx)


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def api_call(ctx: Ctx, case: Case):
    if case.use == "base":
        return load_model(case.path)
    if case.use == "as_base":
        return merged_model(case.path, ctx.single)
    if case.use == "adapter_other":
        return merged_model(ctx.other, case.path)
    return merged_model(ctx.base, case.path)


def cli_args(ctx: Ctx, case: Case) -> list[str]:
    out = str(ctx.root / "cli_out.safetensors")
    if case.use == "base":
        return ["info", str(case.path)]
    if case.use == "as_base":
        return ["merge", "--adapter", str(ctx.single), "--base", str(case.path), "--out", out]
    base = ctx.other if case.use == "adapter_other" else ctx.base
    return ["merge", "--adapter", str(case.path), "--base", str(base), "--out", out]


def _message(ctx: Ctx, case: Case) -> str:
    with pytest.raises(ModelFileError) as err:
        api_call(ctx, case)
    return str(err.value)


# ----------------------------------------------------------------------------- the corpus

def test_corpus_is_large_and_varied(corpus):
    assert len(corpus) >= 20
    assert len({c.name for c in corpus}) == len(corpus)


def test_every_case_refused_by_the_api(ctx, corpus, monkeypatch):
    """ModelFileError with the expected phrase and no hang; files whose header alone is
    bad are refused before any tensor is read; memory stays small. Every case is tried
    and every failing one is reported (one failure does not hide the others); the
    slowest cases are printed, not asserted (the suite asserts no wall-clock times)."""
    loads = []
    real_load = safetensors_file._st_load
    monkeypatch.setattr(safetensors_file, "_st_load", lambda data: loads.append(len(data)) or real_load(data))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    previous = signal.signal(signal.SIGALRM, _alarm)
    messages, problems, seconds = {}, [], {}
    try:
        for case in corpus:
            loads.clear()
            signal.alarm(10)  # a hang fails the case instead of stalling the test
            t0 = time.perf_counter()
            try:
                message = _message(ctx, case)
            except _Hang:
                problems.append((case.name, "hung"))
                continue
            finally:
                signal.alarm(0)
            seconds[case.name] = time.perf_counter() - t0
            if case.expect not in message:
                problems.append((case.name, f"expected {case.expect!r} in {message!r}"))
            if "\n" in message:
                problems.append((case.name, f"a message of several lines: {message!r}"))
            # only the valid companion file (the good adapter or base) may be read
            if case.header_only and not all(size < 10**6 for size in loads):
                problems.append((case.name, f"tensors read from a bad header: {loads}"))
            if case.header_only and case.use == "adapter" and len(loads) > 1:
                problems.append((case.name, f"more than the base model read: {loads}"))
            messages[case.name] = message.replace(str(ctx.root), "")
    finally:
        signal.signal(signal.SIGALRM, previous)
    slowest = sorted(seconds.items(), key=lambda item: -item[1])[:3]
    print("slowest cases:", ", ".join(f"{name} {t:.3f} s" for name, t in slowest))
    assert not problems, "\n".join(f"{name}: {why}" for name, why in problems)
    growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert growth_kib < 200 * 1024, growth_kib
    assert not (ctx.root / "PWNED").exists(), "a pickle was executed"
    # each case gets its own message
    assert len(set(messages.values())) == len(messages), messages


def test_every_case_refused_by_the_command_line(ctx, corpus, capsys):
    problems = []
    for case in corpus:
        code = main(cli_args(ctx, case))
        out, err = capsys.readouterr()
        if code != 2:
            problems.append((case.name, f"exit status {code}: {out}{err}"))
        if not (err.startswith("loragui: error: ") and err.count("\n") == 1):
            problems.append((case.name, f"not one error line: {err!r}"))
        if case.expect not in err:
            problems.append((case.name, f"expected {case.expect!r} in {err!r}"))
        if "Traceback" in err + out:
            problems.append((case.name, "a traceback"))
    assert not problems, "\n".join(f"{name}: {why}" for name, why in problems)
    assert not (ctx.root / "PWNED").exists()


def test_real_command_line_process(ctx, corpus):
    """The pickle bomb through the real entry point (``python -m loragui``). One process
    only: each pays torch's import, and the in-process test above runs the same
    ``main()`` on every case, where an escaping exception would fail it."""
    chosen = [c for c in corpus if c.name == "pickle bomb renamed .safetensors"]
    assert len(chosen) == 1
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = [(c, subprocess.Popen([sys.executable, "-m", "loragui", *cli_args(ctx, c)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, cwd=Path(__file__).resolve().parents[1]))
             for c in chosen]
    for case, proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 2, (case.name, out, err)
        assert err.startswith("loragui: error: ") and "Traceback" not in err, (case.name, err)
        assert case.expect in err, (case.name, err)
    assert not (ctx.root / "PWNED").exists()


# ----------------------------------------------------------------------------- hypothesis

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10)
_POSITION = st.one_of(st.integers(0, 700), st.integers(0, 10**6))
_BYTE_EDIT = st.one_of(
    st.tuples(st.just("flip"), _POSITION, st.integers(0, 7)),
    st.tuples(st.just("set"), _POSITION, st.integers(0, 255)),
    st.tuples(st.just("truncate"), _POSITION),
    st.tuples(st.just("insert"), _POSITION, st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("delete"), _POSITION, st.integers(1, 40)),
)
_CONFIG_KEYS = ["r", "lora_alpha", "target_modules", "modules_to_save", "bias", "use_rslora",
                "rank_pattern", "alpha_pattern", "peft_type", "use_dora", "lora_dropout",
                "exclude_modules", "loragui", "something_new"]
_SECTION_KEYS = ["base_sha256", "architecture", "format", "format_version", "training",
                 "conv_transpose_layers", "peft_loadable", "base_name"]
_DELETE = object()


def _edit_bytes(raw: bytes, edits) -> bytes:
    buf = bytearray(raw)
    for edit in edits:
        pos = edit[1] % (len(buf) + 1)
        if edit[0] == "flip" and pos < len(buf):
            buf[pos] ^= 1 << edit[2]
        elif edit[0] == "set" and pos < len(buf):
            buf[pos] = edit[2]
        elif edit[0] == "truncate":
            del buf[pos:]
        elif edit[0] == "insert":
            buf[pos:pos] = edit[2]
        elif edit[0] == "delete":
            del buf[pos:pos + edit[2]]
    return bytes(buf)


@pytest.fixture(scope="module")
def fuzz(ctx, tmp_path_factory):
    model, info = load_model(ctx.base)
    return {
        "dir": tmp_path_factory.mktemp("fuzz"), "state": model.state_dict(), "info": info,
        "arch": model.config, "single": ctx.single.read_bytes(),
        "config": (ctx.folder / ADAPTER_CONFIG).read_bytes(),
        "weights": (ctx.folder / ADAPTER_WEIGHTS).read_bytes(),
    }


def _load_and_apply(fuzz, path: Path) -> None:
    """The documented outcomes only: it loads, or ModelFileError (anything else fails)."""
    model = UNet(fuzz["arch"])
    model.load_state_dict(fuzz["state"])
    try:
        apply_adapter(model, load_adapter(path), fuzz["info"])
    except ModelFileError as exc:
        assert str(exc) and "\n" not in str(exc)


FUZZ = dict(deadline=None, derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=100, **FUZZ)
@given(target=st.sampled_from(["single", "weights", "config"]),
       edits=st.lists(_BYTE_EDIT, min_size=1, max_size=4))
def test_byte_mutations_load_or_raise_model_file_error(fuzz, target, edits):
    folder = fuzz["dir"] / "bytes"
    if target == "single":
        path = fuzz["dir"] / "bytes.safetensors"
        path.write_bytes(_edit_bytes(fuzz["single"], edits))
    else:
        path = folder
        folder.mkdir(exist_ok=True)
        for name, key in ((ADAPTER_CONFIG, "config"), (ADAPTER_WEIGHTS, "weights")):
            raw = fuzz[key]
            (folder / name).write_bytes(_edit_bytes(raw, edits) if key == target else raw)
    _load_and_apply(fuzz, path)


@settings(max_examples=60, **FUZZ)
@given(key=st.sampled_from(_CONFIG_KEYS + ["loragui." + k for k in _SECTION_KEYS]),
       value=st.one_of(_JSON, st.just(_DELETE)),
       tensor_edit=st.one_of(st.none(), st.tuples(
           st.integers(0, 100), st.sampled_from(["shape", "dtype", "data_offsets", "name"]), _JSON)))
def test_json_mutations_load_or_raise_model_file_error(fuzz, key, value, tensor_edit):
    header, data = st_parse_bytes(fuzz["single"])
    cfg = json.loads(header["__metadata__"]["adapter_config"])
    owner, _, field = key.rpartition(".")
    target = cfg["loragui"] if owner else cfg
    if value is _DELETE:
        target.pop(field, None)
    else:
        target[field] = value
    header["__metadata__"]["adapter_config"] = json.dumps(cfg)
    if tensor_edit is not None:
        names = sorted(k for k in header if k != "__metadata__")
        name = names[tensor_edit[0] % len(names)]
        if tensor_edit[1] == "name":
            header[str(tensor_edit[2])[:40]] = header.pop(name)
        else:
            header[name][tensor_edit[1]] = tensor_edit[2]
    path = fuzz["dir"] / "json.safetensors"
    st_write(path, header, data)
    _load_and_apply(fuzz, path)


def st_parse_bytes(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]
