"""plumbing.durable: whole files or nothing, the old content kept on failure, no temporary file left."""
from __future__ import annotations

import errno
import json
import os

import pytest

from plumbing import durable


def test_writes_replace_the_target_and_leave_no_temporary_file(tmp_path):
    path = tmp_path / "a.json"
    durable.write_json_atomic(path, {"x": "é"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"x": "é"} and path.read_text().endswith("\n")
    durable.write_text_atomic(path, "second")
    durable.replace_atomic(tmp_path / "b.bin", lambda tmp: tmp.write_bytes(b"\0\1"))
    assert path.read_text() == "second" and (tmp_path / "b.bin").read_bytes() == b"\0\1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_a_full_disk_keeps_the_old_content_and_names_the_target(tmp_path, monkeypatch):
    path = tmp_path / "table.md"
    path.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        durable.write_text_atomic(path, "new")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_a_failing_writer_leaves_nothing(tmp_path):
    def half(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        durable.replace_atomic(tmp_path / "x", half)
    assert list(tmp_path.iterdir()) == []


def test_a_set_of_files_is_written_all_or_none(tmp_path, monkeypatch):
    out = tmp_path / "new" / "out"
    durable.write_files_atomic(out, {"a.md": "A", "b.bin": b"B", "c.png": lambda tmp: tmp.write_bytes(b"C")})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"a.md": b"A", "b.bin": b"B", "c.png": b"C"}
    real, calls = os.fsync, []

    def third_full(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", third_full)
    with pytest.raises(durable.PartialWrite) as info:
        durable.write_files_atomic(out, {"a.md": "A2", "b.bin": b"B2", "c.png": b"C2"})
    assert info.value.filename == str(out / "c.png") and info.value.replaced == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"a.md": b"A", "b.bin": b"B", "c.png": b"C"}
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    with pytest.raises(OSError):
        durable.write_files_atomic(tmp_path / "fresh" / "deeper", {"a": "x"})
    assert not (tmp_path / "fresh").exists()  # the folders it made are removed again


def test_a_folder_is_written_whole_or_not_at_all(tmp_path):
    target = tmp_path / "merged"

    def fill(tmp):
        (tmp / "config.json").write_text("{}")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"w")

    assert durable.write_folder_atomic(target, fill) == target
    assert (target / "sub" / "w.bin").read_bytes() == b"w"
    with pytest.raises(FileExistsError):  # a non-empty folder is not replaced unless asked
        durable.write_folder_atomic(target, fill)

    def broken(tmp):
        (tmp / "half").write_text("h")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        durable.write_folder_atomic(target, broken, replace=True)
    assert info.value.filename == str(target) and (target / "config.json").is_file()  # the old folder stays
    durable.write_folder_atomic(target, lambda tmp: (tmp / "new").write_text("n"), replace=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"] and [p.name for p in target.iterdir()] == ["new"]
