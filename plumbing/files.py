"""Facts about files and folders that every command checks: a file's sha256, whether an output folder can
be written, whether an input file may be read whole (a regular file within a documented size limit).
(Writing files that survive a crash is `durable.py`.)"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (checkpoints can be many GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def folder_problem(folder: str | os.PathLike) -> str | None:
    """Why an output folder cannot be used, or None: checked before any work, nothing created.

    A folder that exists must be a writable folder; one that does not must be creatable (its nearest
    existing parent is a writable folder). Root passes permission checks, but not a read-only mount.
    """
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            return "exists and is not a folder"
        if not os.access(folder, os.W_OK | os.X_OK):
            return "cannot write into this folder (permission denied)"
        return None
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: no permission to write in {parent}"
    return None


INPUT_LIMIT_ENV = "MEDLORA_MAX_INPUT_MB"  # raises the limit below, e.g. MEDLORA_MAX_INPUT_MB=8192
DEFAULT_INPUT_LIMIT_MB = 1024  # a pairs file, dataset or database larger than this is refused unless raised


def input_limit_bytes() -> int:
    """The largest input file a command reads whole: `$MEDLORA_MAX_INPUT_MB` megabytes, default 1024."""
    text = os.environ.get(INPUT_LIMIT_ENV, "").strip()
    if text:
        try:
            mb = float(text)
        except ValueError:
            mb = -1.0
        if not mb > 0 or mb != mb or mb == float("inf"):
            raise ValueError(f"{INPUT_LIMIT_ENV}={text!r} is not a positive number of megabytes")
        return int(mb * 1024 * 1024)
    return DEFAULT_INPUT_LIMIT_MB * 1024 * 1024


def input_problem(path: str | os.PathLike) -> str | None:
    """Why the input file `path` should not be read whole, or None: checked before a byte is read.

    A regular file no larger than `input_limit_bytes()` passes; a folder, a device (`/dev/zero`), a FIFO
    or a socket does not (reading one could block or never end), nor a larger file (it would fill the
    memory). A missing file is left to the reader, whose message names it.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a device, a pipe or a socket): give a file"
    try:
        limit = input_limit_bytes()
    except ValueError as exc:
        return str(exc)
    if info.st_size > limit:
        return (f"is {_size(info.st_size)}, more than the {_size(limit)} limit for an input file "
                f"(raise it with {INPUT_LIMIT_ENV}=<megabytes>)")
    return None


def _size(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n:,} bytes"
