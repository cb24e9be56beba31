"""Facts about files and folders that every command checks: a file's sha256, whether an output folder can
be written. (Writing files that survive a crash is `durable.py`.)"""
from __future__ import annotations

import hashlib
import os
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
