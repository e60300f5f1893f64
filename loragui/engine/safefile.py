"""Reading a small file a user gives (a model's header, a settings file) safely.

Torch-free, so that the command line can check a ``--config`` file before torch
loads. A file must be a regular file (a FIFO would block ``open``; ``/dev/zero``
never ends) of a plausible size; JSON must be strict (no duplicate keys, no
NaN/Infinity, no absurd nesting). Every problem is a :class:`ModelFileError`
whose message says what is wrong.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path
from typing import Any

from .errors import ModelFileError

MAX_HEADER_BYTES = 16 * 2**20  # a real safetensors header is a few kB


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


def read_file(path: Path, what: str, *, limit: int | None = None,
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
