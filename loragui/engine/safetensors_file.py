"""Reading a safetensors file, refusing anything else (nothing here unpickles anything).

Every file is checked before tensors are allocated: it must be a regular file
(not a folder, device or pipe), it must not be a pickle or a zip archive, and
its header must be strict JSON with well-formed tensor entries. Whether the
declared tensors fill the file exactly (offsets, sizes, overlaps, gaps) is the
``safetensors`` library's own check, done before anything is allocated; its
errors are reworded here. Every problem is a :class:`ModelFileError` whose
message says what is wrong.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as _st_load

from .errors import ModelFileError
from .safefile import MAX_HEADER_BYTES, parse_json, read_file  # noqa: F401 (used by others too)

DTYPES = frozenset({"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "U16",
                    "U32", "U64", "F8_E4M3", "F8_E5M2"})
FLOAT_DTYPES = {"F32", "F16", "BF16", "F64"}


def _parse_header(data: bytes, size: int, name: str) -> tuple[dict[str, Any], dict[str, str], int]:
    """Check a safetensors header's form (``data`` holds at least the header). Returns
    ``(tensors, metadata, header_length)``; the offsets are checked by :func:`_check_layout`
    and :func:`tensors_from`."""
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
    for key, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ModelFileError(f"{name}: tensor entry {key!r} is malformed (it needs exactly "
                                 "dtype, shape and data_offsets)")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ModelFileError(f"{name}: tensor {key!r} has an unknown dtype {str(dtype)[:40]!r}")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
            raise ModelFileError(f"{name}: tensor {key!r} has an invalid shape {str(shape)[:80]} "
                                 "(it must be a list of at most 8 non-negative integers)")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0
                           for o in offsets)):
            raise ModelFileError(f"{name}: tensor {key!r} has invalid data offsets {str(offsets)[:80]}")
    return header, metadata, n


def _library_error(exc: Exception, name: str, data_len: int) -> ModelFileError:
    """The ``safetensors`` library's complaint about a header whose form was checked,
    said in loragui's words (its own text where it names nothing loragui knows)."""
    text = " ".join(str(exc).split())
    tensor = re.search(r"tensor `([^`]*)`", text)
    if "not fully covered" in text:
        return ModelFileError(f"{name} is truncated or damaged: the tensors its header declares "
                              f"do not fill its {data_len} bytes of tensor data exactly (bytes are missing or "
                              "left over)")
    if "invalid shape, data type, or offset" in text:
        return ModelFileError(f"{name} is damaged: a tensor's shape and dtype need a different "
                              "number of bytes than its data offsets span (or reach beyond the "
                              "file)")
    if "invalid offset" in text and tensor:
        return ModelFileError(f"{name} is damaged: the data of tensor {tensor.group(1)[:80]!r} "
                              "overlaps another tensor's or leaves unused bytes before it")
    return ModelFileError(f"{name} could not be read as safetensors: {text[:200]}")


def _check_layout(path: Path, name: str, data_len: int) -> None:
    """Let the ``safetensors`` library check that the declared tensors fill the file
    exactly; it maps the file and reads only the header."""
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as exc:  # safetensors raises its own error types
        raise _library_error(exc, name, data_len) from None


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse and check a safetensors header without reading tensor data.

    Returns ``(tensors, metadata)`` where ``tensors`` maps names to
    ``{"dtype", "shape", "data_offsets"}``. Raises :class:`ModelFileError` when
    the path is not a regular file, the file is not safetensors, the header is
    oversized or malformed, or the declared tensors do not fill the file exactly.
    """
    path = Path(path)
    data, size = read_file(path, "file", head_only=True)
    header, metadata, n = _parse_header(data, size, path.name)
    _check_layout(path, path.name, size - 8 - n)
    return header, metadata


def load_checked(path: Path, what: str) -> tuple[dict[str, Any], dict[str, str], bytes]:
    """Checked header, metadata and raw bytes of a safetensors file. The header is checked
    before the rest is read (a large file that is not safetensors is never read whole),
    and again on the bytes read (the file may have changed in between: :func:`tensors_from`
    checks their layout)."""
    head, size = read_file(path, what, head_only=True)
    _, _, n = _parse_header(head, size, path.name)
    _check_layout(path, path.name, size - 8 - n)
    data, size = read_file(path, what)
    if len(data) != size:
        raise ModelFileError(f"{path.name} changed while it was being read; try again")
    header, metadata, _ = _parse_header(data, size, path.name)
    return header, metadata, data


def tensors_from(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """Tensors from safetensors bytes whose header form has been checked (no pickle
    involved); the library checks the layout before it allocates anything."""
    try:
        return _st_load(data)
    except Exception as exc:  # safetensors raises its own error types
        (n,) = struct.unpack("<Q", data[:8])
        raise _library_error(exc, name, len(data) - 8 - n) from None


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Check the header, then load every tensor on the CPU (no pickle involved)."""
    path = Path(path)
    _, metadata, data = load_checked(path, "file")
    return tensors_from(data, path.name), metadata


def json_field(metadata: dict[str, str], key: str, name: str, required: bool = True) -> Any:
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


def maybe_json(value: str) -> Any:
    try:
        return parse_json(value, "metadata")
    except ModelFileError:
        return value
