"""plumbing.durable: whole files or nothing, the old content kept on failure, no temporary file left."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

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


def test_imports_neither_torch_nor_numpy():
    code = "import sys, plumbing.durable, plumbing.errors, plumbing.locks, plumbing.signals, plumbing.command, plumbing.files, plumbing.threads; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
