"""Atomic file and folder writes: a crash never leaves a half-written file.

A file is written to a temporary name in the same folder, flushed and fsynced,
then renamed over the target (``os.replace`` is atomic on POSIX and Windows).
A folder is built beside the target and swapped in with two renames; if the
process dies between them, :func:`recover_folder` (called by every reader of
adapter folders) puts the previous folder back.

Whatever goes wrong while writing (a full disk, a read-only or vanished folder,
missing permission), the caller gets a :class:`LoraGuiError` whose message says
what happened and what to do, the temporary file is removed, and the previous
file at the target is unchanged. Writers such as ``torch.save`` and
safetensors' ``save_file`` do not raise ``OSError`` for a full disk (they raise
``RuntimeError`` / ``SafetensorError`` with the reason in the text), so those
are recognised too. Anything else a writer raises is a bug and passes through
unchanged (after the temporary file is removed).

Files get the usual permissions (``0666`` minus the umask), not the ``0600``
that :func:`tempfile.mkstemp` gives, so an adapter can be shared like any
other file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import LoraGuiError

TMP_SUFFIX = ".tmp"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
_FILE_MODE = 0o666 & ~_UMASK
_DIR_MODE = 0o777 & ~_UMASK

# errno -> what to tell a person. The message always ends with what to do.
_EDQUOT = getattr(errno, "EDQUOT", 122)  # not in every platform's errno
_WHY = {
    errno.ENOSPC: "the disk is full; free some space (or choose a folder on another disk) "
                  "and try again",
    _EDQUOT: "your disk quota is used up; free some space and try again",
    errno.EROFS: "the disk or folder is read-only; choose another folder",
    errno.EACCES: "permission denied: the folder is read-only or you lack permission; "
                  "choose another folder",
    errno.EPERM: "permission denied: the folder is read-only or you lack permission; "
                 "choose another folder",
    errno.EFBIG: "the file is too large for this disk's file system (FAT32 stops at 4 GB); "
                 "choose a folder on another disk",
    errno.EIO: "an input/output error (is the disk failing, or was it unplugged?)",
    errno.ENOENT: "the folder disappeared while writing (moved, deleted, or a drive "
                  "unplugged?); choose the folder again",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter folder name",
}

# What non-OSError writers (torch.save, safetensors) put in their messages.
_TEXT_ERRNO = [
    (re.compile(r"no space left|os error 28|storagefull|enospc", re.I), errno.ENOSPC),
    (re.compile(r"quota|os error 122", re.I), _EDQUOT),
    (re.compile(r"read-only file system|os error 30|erofs", re.I), errno.EROFS),
    (re.compile(r"permission denied|os error 13|os error 1\b", re.I), errno.EACCES),
    (re.compile(r"file too large|os error 27", re.I), errno.EFBIG),
    (re.compile(r"input/output error|os error 5\b", re.I), errno.EIO),
]
# torch.save's zip writer reports a short write as "unexpected pos N vs M" or
# "file write failed": the disk is full, or the file system refused the write.
_SHORT_WRITE = re.compile(r"unexpected pos|file write failed|failed writing|write failed",
                          re.I)
_NEARLY_FULL = 1 << 20  # less free space than this after a failed write: the disk is full


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _message(path: Path, why: str) -> LoraGuiError:
    return LoraGuiError(f"could not write {path}: {why}. Any previous file there is unchanged.")


def _write_error(path: Path, exc: OSError) -> LoraGuiError:
    why = _WHY.get(exc.errno) if exc.errno is not None else None
    return _message(path, why or exc.strerror or str(exc))


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def disk_error(path: str | os.PathLike, exc: BaseException) -> LoraGuiError | None:
    """The :class:`LoraGuiError` for a failed write of ``path``, or None when
    ``exc`` is not an input/output problem (a bug, which must surface as one)."""
    path = Path(path)
    if isinstance(exc, LoraGuiError):
        return exc
    if isinstance(exc, OSError):
        return _write_error(path, exc)
    if not isinstance(exc, Exception):
        return None
    text = str(exc)
    for pattern, code in _TEXT_ERRNO:
        if pattern.search(text):
            return _message(path, _WHY[code])
    if _SHORT_WRITE.search(text):
        free = _free_bytes(path.parent)
        if free is not None and free < _NEARLY_FULL:
            return _message(path, _WHY[errno.ENOSPC])
        return _message(path, f"the write was cut short ({text.strip()[:120]}); check that the "
                              "disk has free space and the folder is writable, then try again")
    return None


def _release(exc: BaseException) -> None:
    """Drop the writer's stack frames now. They may hold the temporary file open
    (torch.save's zip writer does after a failed write), and a deleted file that
    is still open keeps its space on a full disk, or a folder busy."""
    exc.__traceback__ = None
    exc.__context__ = exc.__cause__ = None


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the result to ``path`` atomically.

    Raises :class:`LoraGuiError` (with the temporary file removed and any
    previous file at ``path`` untouched) when the disk is full, read-only, etc.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):  # e.g. a FAT or SMB folder without permissions
            os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        error = disk_error(path, exc)  # before removing the temporary file: it holds the space
        if error is not None and error is not exc:
            _release(exc)
            _remove(tmp_path)
            raise error from None
        _remove(tmp_path)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _old_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it replaces ``path`` whole.

    The previous folder is renamed to ``.NAME.old`` and the new one renamed to
    ``NAME``; if the second rename fails, the previous folder is put back, and
    if the process dies between the two, :func:`recover_folder` puts it back.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        recover_folder(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent))
    except OSError as exc:
        raise _write_error(path, exc) from exc
    old = None
    moved = False
    try:
        yield tmp
        for root, _dirs, files in os.walk(tmp):
            for name in files:
                with open(os.path.join(root, name), "rb") as fh:
                    os.fsync(fh.fileno())
            _fsync_dir(Path(root))
        with contextlib.suppress(OSError):
            os.chmod(tmp, _DIR_MODE)
            for child in tmp.iterdir():
                if child.is_file():
                    os.chmod(child, _FILE_MODE)
        if path.exists():
            old = _old_name(path)
            if old.exists():
                shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            moved = True
        os.replace(tmp, path)
        moved = False
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        error = disk_error(path, exc)
        if error is not None and error is not exc:
            _release(exc)
        shutil.rmtree(tmp, ignore_errors=True)
        if moved and old is not None and not path.exists():  # put the previous folder back
            with contextlib.suppress(OSError):
                os.replace(old, path)
        if error is not None and error is not exc:
            raise error from None
        raise


def recover_folder(path: str | os.PathLike) -> None:
    """If a crash hit between the two renames of :func:`atomic_folder`, restore the old folder."""
    path = Path(path)
    old = _old_name(path)
    if not path.exists() and old.is_dir():
        os.replace(old, path)


def stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Leftovers of writes that a killed process never finished, for the given
    target names in ``folder``: ``.NAME.XXXX.tmp`` files or folders, and
    ``.NAME.old`` folders whose ``NAME`` exists again."""
    folder = Path(folder)
    found: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return found
    for name in names:
        prefix = f".{name}."
        for entry in entries:
            n = entry.name
            if n.startswith(prefix) and n.endswith(TMP_SUFFIX) and len(n) > len(prefix) + 4:
                found.append(entry)
            elif n == f".{name}.old" and (folder / name).exists():
                found.append(entry)
    return sorted(found)


def clean_folder(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Finish what a killed writer left in ``folder``: restore ``.NAME.old``
    folders whose ``NAME`` is missing, then remove stale temporaries. Only for
    a folder this process owns (a run folder): a temporary of a write in
    progress elsewhere would be removed too. Returns what was removed."""
    names = list(names)
    for name in names:
        with contextlib.suppress(OSError):
            recover_folder(Path(folder) / name)
    removed = stale_temporaries(folder, names)
    for entry in removed:
        _remove(entry)
    return removed
