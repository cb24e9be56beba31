"""Run-folder files: checksums, the disk-full test and the one-run-per-folder lock.

Atomic writes (a fsynced temporary file renamed over the target) are `minillama.durable`'s, shared
with every package of the project.
"""
from __future__ import annotations

import errno
import hashlib
from pathlib import Path

from minillama.jobcontrol import FileLock


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (checkpoints can be many GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_disk_full(e: BaseException) -> bool:
    """True for "no space left on device" and "disk quota exceeded"."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


class FolderLock(FileLock):
    """An exclusive lock on a folder (`flock` on `<folder>/.lock`), held for the life of a run.

    `minillama.jobcontrol.FileLock` on `<folder>/<name>`: the kernel releases it when the process dies
    (SIGKILL included), so a lock left by a killed run never blocks the next one. `acquire` returns
    False when another live process holds it.
    """

    def __init__(self, folder: str | Path, name: str = ".lock"):
        super().__init__(Path(folder) / name)
