"""The lock of a run folder: one run writes to a folder at a time.

The lock is the operating system's, on :data:`~loragui.engine.outputs.LOCK` inside
the run folder (``fcntl.flock`` on Linux and macOS, ``msvcrt.locking`` on
Windows), so a killed process releases it: no stale lock ever needs removing.
The holder's process id is written in the file for the message a second run
gets. In a multi-process run only rank 0 writes the folder, so only rank 0
takes the lock and the other ranks never wait on it.

The lock also tells whether the folder is still the one the run started in:
if it was deleted or moved, the lock file at its path is gone or another file.

Torch-free.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import LoraGuiError
from .outputs import LOCK

if os.name == "nt":
    import msvcrt

    # A byte far past the process id: Windows forbids reading a locked range.
    _LOCK_OFFSET = 1 << 20

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)


class FolderInUse(LoraGuiError):
    """Another process is writing to the run folder."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii", errors="replace")[:32].strip()
    except OSError:
        return "another process"
    return f"process {text}" if text.isdigit() else "another process"


def probe(folder: str | os.PathLike) -> None:
    """Raise :class:`FolderInUse` if a run holds ``folder``'s lock now (a check
    before any other: a run in progress is not "a run's files")."""
    path = Path(folder) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file, or not ours to open: nobody holds it
    try:
        if not _try_lock(fd):
            raise _in_use(folder, path)
        _unlock(fd)
    finally:
        os.close(fd)


def _in_use(folder: str | os.PathLike, path: Path) -> FolderInUse:
    return FolderInUse(f"{folder} is in use by {_holder(path)}: another training writes to it. "
                       "Wait for it to finish, stop it, or choose another --out")


class RunLock:
    """Held while a run writes to its folder; :meth:`release` (or the process's
    end, however it ends) lets it go."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        # The lock is held on a read-only descriptor: a file open for writing would keep
        # the drive from being remounted read-only or ejected cleanly during a run.
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LoraGuiError(f"cannot write in the run folder {self.folder} "
                               f"({exc.strerror or exc}); choose another folder") from None
        if not _try_lock(fd):
            os.close(fd)
            raise _in_use(self.folder, self.path)
        try:
            with open(self.path, "w", encoding="ascii") as fh:  # the holder, for the message
                fh.write(str(os.getpid()))
        except OSError as exc:
            _unlock(fd)
            os.close(fd)
            raise LoraGuiError(f"cannot write in the run folder {self.folder} "
                               f"({exc.strerror or exc}); choose another folder") from None
        self._fd: int | None = fd
        st = os.fstat(fd)
        self._identity = (st.st_dev, st.st_ino)

    def still_there(self) -> bool:
        """The run folder is still where it was, with this lock in it."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity

    def check(self) -> None:
        """Raise a LoraGuiError if the run folder was deleted or moved away."""
        if not self.still_there():
            raise LoraGuiError(f"the run folder {self.folder} disappeared while training (deleted, "
                               "moved, or its drive removed); the run stopped and its results "
                               "are lost. Train again into a folder that stays in place")

    def release(self) -> None:
        if self._fd is None:
            return
        _unlock(self._fd)
        os.close(self._fd)
        self._fd = None
