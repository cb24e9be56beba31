"""One run per folder: an exclusive `flock` that the kernel releases when its process dies, however it dies.

    with exclusive_lock(out / "journal.lock", "another `python -m judge run`"):   # else LockedError, exit 2
        ...
    lock = folder_lock(run_dir)            # `<run_dir>/.lock`; lock.acquire() is False while another run holds it

A lock left by a SIGKILLed process never blocks the next run. The lock file holds the holder's pid, only for
messages; it is not removed afterwards (removing it would race with a new holder).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from plumbing.errors import EXIT_USAGE


class LockedError(OSError):
    """The lock file is held by another live process; the message says which file and which pid.

    Attributes:
        exit_code: 2, as training and the pipeline refuse a busy folder: the command asks for a folder
            that is in use (usage), and the same command succeeds once the other run ends.
    """

    exit_code = EXIT_USAGE


class FileLock:
    """An exclusive `flock` on `path` (created with its folder if missing), held from `acquire` to `release`.

    On systems without `fcntl` (Windows) `acquire` always succeeds: there is no lock.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another live process (or another FileLock here) holds it.

        Raises:
            OSError: the lock file cannot be created (a read-only folder, a full disk for a new inode).
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            pass  # the pid is only for messages; a full disk must not stop a run that holds the lock
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the process that holds (or last held) the lock, or "unknown"."""
        try:
            return self.path.read_text(encoding="ascii", errors="replace").strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        """Give the lock back (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def folder_lock(folder: str | os.PathLike, name: str = ".lock") -> FileLock:
    """The lock of a run folder: a `FileLock` on `<folder>/<name>` (not yet acquired)."""
    return FileLock(Path(folder) / name)


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str = "another run") -> Iterator[Path]:
    """Hold a `FileLock` on `path` for the block.

    Raises:
        LockedError: another live process holds the lock: `"<path>: <what> (pid N) is using it; ..."`.
        OSError: the lock file cannot be created (e.g. a read-only folder).
    """
    lock = FileLock(path)
    if not lock.acquire():
        raise LockedError(f"{lock.path}: {what} (pid {lock.holder()}) is using this folder; wait for it to end, "
                          "or use another output folder")
    try:
        yield lock.path
    finally:
        lock.release()
