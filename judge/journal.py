"""Append-only JSONL journal of finished judgments: durable, keyed, resumable, crash-tolerant."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from judge.errors import JudgeError


def judgment_key(judge_model: str, messages: list[dict], sampling: dict, repeat: int, item: list) -> str:
    """sha256 of (judge model, exact prompt, sampling parameters, repeat index, item).

    Any change to what the judge is asked (rubric, response text, model, temperature, seed, max_tokens)
    gives a new key, so a resumed run never reuses an answer to a different question. `item` (the id
    and the system names, which are hashed but never sent) keeps two systems that happen to give the
    same text for one id apart.
    """
    canonical = json.dumps({"judge_model": judge_model, "messages": messages, "sampling": sampling,
                            "repeat": repeat, "item": item},
                           sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Journal:
    """One JSON object per line, each with a "key"; appended, flushed and fsynced one line at a time.

    A crash can only tear the last line (a partial write): reading skips such lines and counts them
    in `torn`, and appending first ends the torn line so the next record starts on a fresh line.
    Nothing is ever rewritten or truncated.

    Args:
        path: the journal file (created with its folder when missing).
        fsync: force each line to disk (default); tests and benchmarks on tmpfs may turn it off.
    """

    def __init__(self, path: str | Path, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.torn = 0
        self.records: dict[str, dict] = {}  # key -> latest record
        self._file = None
        self._needs_newline = False
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        """Read every whole record (the newest per key wins); count torn lines."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise JudgeError(f"{self.path}: cannot read the journal ({exc.strerror})") from None
        for number, line in enumerate(data.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = record["key"]
            except (ValueError, KeyError, TypeError):
                self.torn += 1  # a line cut by a crash (or damaged): skipped, never rewritten
                continue
            self.records[key] = record
        self._needs_newline = bool(data) and not data.endswith(b"\n")

    def __contains__(self, key: str) -> bool:
        record = self.records.get(key)
        return record is not None and record.get("status") != "error"  # transport errors are retried

    def get(self, key: str) -> dict | None:
        """The newest record of `key` (any status), or None."""
        return self.records.get(key)

    def open(self) -> "Journal":
        """Open for appending (creating the folder and file)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._file = open(self.path, "ab")
            except OSError as exc:
                raise JudgeError(f"{self.path}: cannot open the journal for appending ({exc.strerror})") from None
            if self._needs_newline:
                self._file.write(b"\n")  # end a torn last line; its bytes stay as they were
                self._needs_newline = False
        return self

    def append(self, record: dict) -> None:
        """Write one record durably: a whole line, flushed (and fsynced) before returning."""
        if "key" not in record:
            raise ValueError("a journal record needs a 'key'")
        if self._file is None:
            self.open()
        line = json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
        self._file.write(line)
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self.records[record["key"]] = record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "Journal":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
