"""The one rule for every path loragui writes to: it never destroys a user's file.

Every writing command (train, predict, merge, export in each of its forms), the
window's dialogs and the self-test ask :func:`check_output` before any work:

* an output never replaces, holds, or lies inside an input of the same command.
  Paths are compared by file identity (``st_dev``/``st_ino`` after resolving
  links), so another spelling, a symbolic or a hard link of an input is caught;
* an output folder that exists must be empty or loragui's own kind of output: a
  run folder, an adapter folder, or a prediction folder (marked with
  :data:`MARKER`); otherwise it is refused with a message naming what is there;
* an output file that exists must be a file loragui wrote (a model, adapter or
  ONNX file with loragui's stamp in its header);
* replacing loragui's own earlier output is an explicit choice (``overwrite``:
  ``--overwrite`` on the command line, a confirmation in the window); without it
  the refusal is an :class:`OutputRefused` with ``replaceable`` set.

Torch-free: the window checks a destination before it loads a model.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import LoraGuiError
from .formats import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from .runrecord import ADAPTER, CHECKPOINT, METRICS, MODEL_FILE, RUN_FILES, RUN_JSON

# The kinds of output.
RUN = "run"  # a training run's folder (see runrecord)
ADAPTER_DIR = "adapter folder"  # a PEFT adapter folder, replaced whole
PREDICTIONS = "predictions"  # a folder of predicted masks
CORRECTIONS = "corrections"  # a folder of masks corrected in the review view (corrections.py)
FILE = "file"  # one file: a single-file adapter, a merged model, an ONNX model

# loragui's mark on the folders it makes for runs and predictions: JSON {"kind": ...}.
MARKER = ".loragui.json"
# The lock file of a run folder (see runlock).
LOCK = ".loragui.lock"
# What a run folder holds besides RUN_FILES: the window's settings for the child
# process, its standard error, the previews of ``--events jsonl``.
RUN_EXTRAS = ("config.json", "train-stderr.log", "previews")
# Files the file managers leave in any folder: never a reason to refuse one.
SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".directory"})
# Header stamps of the files loragui writes (formats.py, onnx_export.ONNX_FORMAT).
OWN_FORMATS = ("loragui.",)


class OutputRefused(LoraGuiError):
    """An output path that would replace or mix with something it must not.

    ``replaceable``: the path holds loragui's own earlier output (``held`` says
    what), which the same call with ``overwrite=True`` replaces (the window asks
    before doing so).
    """

    def __init__(self, message: str, *, held: str = "") -> None:
        super().__init__(message)
        self.held = held  # what the path holds, for the window's question ("F holds ...")
        self.replaceable = bool(held)


@dataclass(frozen=True)
class Input:
    """A path a command reads. ``nest_ok``: an output may be made inside it (a
    subfolder of a folder of images is not one of its images)."""

    label: str  # how the message names it: "the images folder", "--base"
    path: str | os.PathLike | None
    nest_ok: bool = False


def model_inputs(source: str | os.PathLike | None, base: str | os.PathLike | None
                 ) -> list[Input]:
    """What a merge or an export reads: the adapter or model given, and the base model."""
    return [Input("the source", source), Input("the base model (--base)", base)]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _absolute(path: str | os.PathLike) -> Path:
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError):  # a link loop: compare what can be compared
        return Path(os.path.abspath(Path(path).expanduser()))


def is_within(inner: str | os.PathLike, outer: str | os.PathLike) -> bool:
    """``inner`` is ``outer`` or lies somewhere inside it (by file identity)."""
    want = _identity(_absolute(outer))
    if want is None:
        return False
    inner = _absolute(inner)
    return any(_identity(p) == want for p in (inner, *inner.parents))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _names(entries: list[str], limit: int = 4) -> str:
    shown = ", ".join(entries[:limit])
    return shown + (f", and {len(entries) - limit} more" if len(entries) > limit else "")


def read_marker(folder: str | os.PathLike) -> str | None:
    """The kind of output loragui marked ``folder`` as, or None."""
    try:
        with open(Path(folder) / MARKER, encoding="utf-8") as fh:
            data = json.loads(fh.read(4096))
    except (OSError, ValueError):
        return None
    return data.get("kind") if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def mark(folder: str | os.PathLike, kind: str) -> None:
    """Mark ``folder`` (which exists) as loragui's output of ``kind``."""
    from .atomic import atomic_write_text
    from .formats import now_iso

    if read_marker(folder) != kind:
        atomic_write_text(Path(folder) / MARKER, json.dumps({"kind": kind, "created": now_iso()}) + "\n")


def _own_temporary(name: str, own: Iterable[str]) -> bool:
    """``.NAME.xxxx.tmp`` or ``.NAME.old`` of one of loragui's names (see atomic.py)."""
    return name.startswith(".") and any(name.startswith(f".{n}.") for n in own)


def _png_temporary(name: str) -> bool:
    """``.x.png.XXXX.tmp``: what a killed write of a mask leaves (atomic.py)."""
    return name.startswith(".") and name.endswith(".tmp") and ".png." in name.lower()


def _own_prediction(folder: Path, name: str) -> bool:
    """``name`` in a marked prediction folder is loragui's: a mask, the objects tables,
    or the folder of object labels holding label files only (see objects.py)."""
    from .objects import COUNTS_CSV, LABELS_DIR, OBJECTS_CSV

    if name.lower().endswith(".png") or name in (OBJECTS_CSV, COUNTS_CSV):
        return True
    if name != LABELS_DIR or not (folder / name).is_dir() or (folder / name).is_symlink():
        return False
    try:
        with os.scandir(folder / name) as it:
            return all(e.name in SYSTEM_FILES or (e.is_file(follow_symlinks=False)
                                                  and e.name.lower().endswith((".png", ".tif")))
                       for e in it)
    except OSError:
        return False


def foreign_entries(folder: Path, kind: str) -> list[str]:
    """The entries of ``folder`` that loragui does not write there for ``kind``
    (folders shown with a trailing ``/``), sorted."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    own: set[str] = {MARKER, LOCK}
    if kind == RUN:
        own |= set(RUN_EXTRAS)
        # A run's files count as loragui's in a folder loragui marked as a run, or (a run
        # from before the mark) one with a run record or checkpoint: an adapter/ alone
        # may be the user's own.
        if read_marker(folder) == RUN or any((folder / n).is_file() for n in (RUN_JSON, CHECKPOINT)):
            own |= set(RUN_FILES)
    elif kind == ADAPTER_DIR:
        own |= {ADAPTER_CONFIG, ADAPTER_WEIGHTS}
    foreign = []
    for entry in entries:
        name = entry.name
        if name in SYSTEM_FILES or name in own or _own_temporary(name, own):
            continue
        if read_marker(folder) == kind and (
                (kind == PREDICTIONS and _own_prediction(folder, name))
                or (kind == CORRECTIONS and name.lower().endswith(".png"))
                or (kind in (PREDICTIONS, CORRECTIONS) and _png_temporary(name))):
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        foreign.append(name + ("/" if is_dir else ""))
    return foreign


def file_format(path: Path) -> str:
    """The ``format`` stamp in a model file's header (or an ONNX file's properties);
    "" for a file that carries none or cannot be read."""
    try:
        if path.suffix.lower() == ".onnx":
            import onnx  # the onnx extra; without it no ONNX file is recognised

            proto = onnx.load(str(path), load_external_data=False)
            found = {p.key: p.value for p in proto.metadata_props}.get("format", "")
        else:
            from safetensors import safe_open  # reads the header only

            with safe_open(str(path), framework="numpy") as fh:
                found = (fh.metadata() or {}).get("format", "")
    except Exception:  # not a readable model file: not one of loragui's
        return ""
    return found if isinstance(found, str) else ""


# How a message names each of loragui's file formats.
FORMAT_NAMES = {"loragui.base": "a base model", "loragui.merged": "a merged model",
                "loragui.adapter": "an adapter file", "loragui.onnx": "an ONNX model"}


def run_summary(folder: Path) -> str:
    """What a run folder holds, for a message: "a finished run (best Dice 0.8600, 2026-…)"."""
    try:
        record = json.loads((folder / RUN_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        if (folder / CHECKPOINT).exists():
            return "an unfinished run (its checkpoint)"
        made = [n for n in (ADAPTER, MODEL_FILE, METRICS) if (folder / n).exists()]
        return f"a run's files ({', '.join(made)})" if made else "a run that wrote nothing yet"
    status = record.get("status") if isinstance(record.get("status"), str) else "earlier"
    details = []
    best = record.get("best")
    if isinstance(best, dict) and isinstance(best.get("dice"), int | float):
        details.append(f"best Dice {best['dice']:.4f}")
    if isinstance(record.get("created"), str):
        details.append(record["created"])
    return f"a {status} run" + (f" ({', '.join(details)})" if details else "")


def holds_output(folder: str | os.PathLike, kind: str) -> bool:
    """``folder`` holds loragui's output of ``kind`` (and nothing of anyone else's)."""
    folder = Path(folder)
    try:
        if not folder.is_dir() or foreign_entries(folder, kind):
            return False
        names = {e.name for e in os.scandir(folder)} - SYSTEM_FILES
    except OSError:
        return False
    if kind == ADAPTER_DIR:
        return {ADAPTER_CONFIG, ADAPTER_WEIGHTS} <= names
    if kind == RUN:  # the window's config.json alone is a run about to start
        return bool(names & set(RUN_FILES))
    return any(n.lower().endswith(".png") for n in names)


def _check_inputs(out: Path, kind: str, inputs: Iterable[Input], flag: str) -> None:
    out_id = _identity(out)
    for item in inputs:
        if item.path is None or str(item.path).strip() == "":
            continue
        src = _absolute(item.path)
        src_id = _identity(src)
        if src_id is None:
            continue
        if src_id == out_id:
            raise OutputRefused(f"{flag} {out} is {item.label} itself: writing there would "
                                f"replace it; choose another {flag}")
        if out_id is not None and kind != FILE and is_within(src, out):
            raise OutputRefused(f"{flag} {out} holds {item.label} ({src}): writing there would "
                                f"replace or mix files; choose another {flag}")
        if src.is_dir() and not item.nest_ok and is_within(out, src):
            raise OutputRefused(f"{flag} {out} is inside {item.label} ({src}): writing there "
                                f"would mix loragui's files with it; choose another {flag}")


def check_output(out: str | os.PathLike, kind: str, inputs: Iterable[Input] = (), *,
                 overwrite: bool = False, resume: bool = False, flag: str = "--out",
                 replaces: str | None = None) -> Path:
    """Refuse ``out`` (an :class:`OutputRefused` saying why and what to do) where
    writing an output of ``kind`` there could destroy a file that is not loragui's
    own earlier output, or (without ``overwrite``) loragui's own; else ``out`` made
    absolute. ``resume``: a run continues in its own folder. ``flag``: how the
    messages name the destination. ``replaces`` (a :data:`FILE`): the format of
    loragui's files that this output may replace (a merged model replaces a merged
    model, never a base model)."""
    if str(out).strip() == "":
        raise OutputRefused(f"no output was given: pass {flag}")
    path = Path(os.path.abspath(Path(out).expanduser()))
    _check_inputs(path, kind, inputs, flag)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path  # a new file or folder
    except OSError as exc:
        raise OutputRefused(f"{flag} {path} cannot be examined ({exc.strerror or exc}); choose "
                            "another folder") from None
    if kind == FILE:
        return _check_file(path, st, overwrite, flag, replaces)
    if not stat.S_ISDIR(st.st_mode):
        raise OutputRefused(f"{flag} {path} is a file, not a folder: give a new or empty folder "
                            f"for the {kind}")
    try:
        foreign = foreign_entries(path, kind)
    except OSError as exc:
        raise OutputRefused(f"{flag} {path} cannot be read ({exc.strerror or exc}); choose "
                            "another folder") from None
    if foreign and kind != RUN and holds_output(path, RUN):
        raise OutputRefused(f"{path} holds {run_summary(path)}; choose an empty or new folder")
    if foreign:
        raise OutputRefused(
            f"{path} holds {_plural(len(foreign), 'file')} loragui did not write "
            f"({_names(foreign)}); choose an empty or new folder")
    if not holds_output(path, kind):
        return path  # empty (or only loragui's marker)
    if kind == RUN:
        if resume or overwrite:
            return path
        held = f"{path} holds {run_summary(path)}"
        raise OutputRefused(f"{held}; use --resume to continue it, --overwrite to replace it, "
                            f"or another {flag}", held=held)
    if not overwrite:
        held = f"{path} holds " + ("an adapter" if kind == ADAPTER_DIR
                                   else "masks loragui predicted earlier")
        raise OutputRefused(f"{held}; use --overwrite to replace it, or another {flag}", held=held)
    return path


def _check_file(path: Path, st: os.stat_result, overwrite: bool, flag: str,
                replaces: str | None) -> Path:
    if stat.S_ISDIR(st.st_mode):
        raise OutputRefused(f"{flag} {path} is a folder: give a file name, such as "
                            f"{path / 'name.safetensors'}")
    if not stat.S_ISREG(st.st_mode):
        raise OutputRefused(f"{flag} {path} is not a regular file (a device, pipe or socket); "
                            "give a new file name")
    found = file_format(path)
    if not found.startswith(OWN_FORMATS):
        raise OutputRefused(f"{path} is a file loragui did not write; give a new file name")
    what = FORMAT_NAMES.get(found, "a loragui file")
    if replaces is not None and found != replaces:
        raise OutputRefused(f"{path} is {what}; it is kept: give a new file name")
    if not overwrite:
        held = f"{path} exists ({what} loragui wrote earlier)"
        raise OutputRefused(f"{held}; use --overwrite to replace it, or another {flag}", held=held)
    return path
