"""Writes that survive a crash, the one implementation every package uses: a file, a set of files, a folder.

Each is first written under a hidden temporary name beside its target (`.<name>.tmp`), forced to disk
(fsync), then renamed over the target, and the parent folder is fsynced: after a crash (SIGKILL, power
loss) the target holds either its old content or the new one, never half of it. A full disk raises
`OSError(ENOSPC)` before the rename, so the old content stays, the temporary files are removed, and the
error names the target; callers turn it into one line.

    write_text_atomic(path, text)                      # one file (also _bytes_, _json_)
    write_files_atomic(folder, {"a.md": text, "b.png": lambda tmp: fig.savefig(tmp)})   # all or none
    write_folder_atomic(folder, lambda tmp: model.save_pretrained(tmp))                 # a whole folder
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Mapping

Content = str | bytes | Callable[[Path], None]  # text, bytes, or a function that writes the temporary path


def fsync(path: str | os.PathLike) -> None:
    """Force a file, or a folder's entries (a rename, a new file), to disk. A full disk with delayed
    allocation fails here, before any rename."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fill(tmp: Path, content: Content) -> None:
    if callable(content):
        content(tmp)
    elif isinstance(content, bytes):
        tmp.write_bytes(content)
    else:
        tmp.write_bytes(content.encode("utf-8"))


def _named(exc: OSError, path: Path) -> OSError:
    """`exc` with `path` as its file name when it named none (or only the temporary file)."""
    if exc.errno is None or (exc.filename and ".tmp" not in str(exc.filename)):
        return exc
    return OSError(exc.errno, exc.strerror, str(path))


def replace_atomic(path: str | os.PathLike, write: Content) -> None:
    """`write` fills a temporary sibling of `path` (or is the text / bytes to put there); it is forced to
    disk and renamed over `path`.

    Raises:
        OSError: the write, fsync or rename failed (a full disk); `filename` is `path` when the
            error named no file, and no temporary file is left behind.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        _fill(tmp, write)
        fsync(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _named(e, path) from None
        raise
    fsync(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see `replace_atomic`)."""
    replace_atomic(path, data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically (see `replace_atomic`)."""
    replace_atomic(path, text)


def write_json_atomic(path: str | os.PathLike, obj, indent: int = 1) -> None:
    """Write JSON (with a final newline) to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


class PartialWrite(OSError):
    """`write_files_atomic` failed; `replaced` files of the set had already been renamed into place
    (0 unless the failure came in the rename phase, which a full disk does not reach)."""

    replaced: int = 0


def _make_folder(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns the folders created, deepest first."""
    created, probe = [], folder
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    return created


def write_files_atomic(folder: str | os.PathLike, files: Mapping[str, Content]) -> None:
    """Write a set of files into `folder` (created if needed) so that a failure changes none of them.

    Every file is written to a hidden temporary sibling and forced to disk first; only when all of them are
    there are they renamed over their targets. On a failure every temporary file, and every folder this
    call created, is removed: the files already in `folder` are left exactly as they were.

    Raises:
        PartialWrite: an OSError naming the file that failed (errno and strerror kept), with `replaced`.
    """
    folder = Path(folder)
    temps = {folder / f".{name}.tmp{os.getpid()}": folder / name for name in files}
    created: list[Path] = []
    renamed = 0
    try:
        created = _make_folder(folder)
        for (tmp, path), content in zip(temps.items(), files.values()):
            try:
                _fill(tmp, content)
                fsync(tmp)
            except OSError as e:
                raise _named(e, path) from None
        for tmp, path in temps.items():
            os.replace(tmp, path)
            renamed += 1
        fsync(folder)
    except OSError as e:
        failure = PartialWrite(e.errno, e.strerror or str(e), e.filename or str(folder))
        failure.replaced = renamed
        raise failure from None
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if not renamed:
            for made in created:  # deepest first; only empty folders this call made
                try:
                    made.rmdir()
                except OSError:
                    break


def write_folder_atomic(path: str | os.PathLike, fill: Callable[[Path], None], replace: bool = False) -> Path:
    """Build a folder under a hidden temporary name (`.<name>.tmp`), force every file in it to disk, rename it.

    Args:
        path: the folder to create.
        fill: writes the folder's contents into the temporary folder it is given (which exists, empty).
        replace: remove an existing `path` before the rename (it is absent for an instant: use this for a
            folder that is incomplete or rebuilt from a cache); False: an existing non-empty `path` is
            refused with FileExistsError (an empty one is replaced).

    Returns:
        `path`.

    Raises:
        FileExistsError: `path` exists, is not empty, and `replace` is False (nothing was written).
        OSError: writing failed (a full disk); the temporary folder is removed and `path` is unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a crashed attempt
        tmp.mkdir()
        fill(tmp)
        for root, _dirs, names in os.walk(tmp):
            for name in names:
                fsync(Path(root) / name)
            fsync(root)
        if path.exists():
            if replace:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
            else:
                raise FileExistsError(17, "already exists and is not empty", str(path))
        os.replace(tmp, path)
        fsync(path.parent)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and not isinstance(e, FileExistsError):
            raise _named(e, path) from None
        raise
    return path
