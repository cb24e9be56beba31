"""Atomic file writes that survive a crash: the one implementation every package of the project uses.

A file is first written to a hidden temporary sibling (`.<name>.tmp`), flushed and fsynced, then
renamed over the target, and the folder is fsynced: after a crash (SIGKILL, power loss) the target
holds either its old content or the new one, never half of it. A full disk raises `OSError(ENOSPC)`
before the rename, so the old content stays, the temporary file is removed, and the error names the
target; callers turn it into one line.

Like `minillama.jobcontrol`, it imports neither torch nor numpy, so `judge` and `evalkit` use it too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder, so that a rename or a new file in it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """`write(tmp)` fills a temporary sibling of `path`; it is forced to disk and renamed over `path`.

    Raises:
        OSError: the write, fsync or rename failed (a full disk); `filename` is `path` when the
            error named no file, and no temporary file is left behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # a full disk with delayed allocation fails here, before the rename
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not e.filename:
            raise OSError(e.errno, e.strerror, str(path)) from None  # name the file in the message
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `replace_atomic`)."""
    replace_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically (see `replace_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj, indent: int = 1) -> None:
    """Write JSON (with a final newline) to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")
