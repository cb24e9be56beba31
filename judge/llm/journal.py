"""Append-only JSONL journal of finished judgments: durable, keyed, resumable, crash-tolerant."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from plumbing.errors import os_problem
from plumbing.locks import LockedError, exclusive_lock

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
    """One JSON object per line, each with a "key"; appended, written and fsynced one line at a time.

    A crash can only tear the last line (a partial write): reading skips such lines and counts them
    in `torn`, and appending first ends the torn line so the next record starts on a fresh line.
    Nothing is ever rewritten or truncated. While open for appending, the journal holds an exclusive
    lock (`<journal>.lock`, `plumbing.locks.exclusive_lock`): a second run on the same journal
    is refused instead of requesting every item again; the lock dies with its process (even SIGKILL).

    Args:
        path: the journal file (created with its folder when missing).
        fsync: force each line to disk (default); tests and benchmarks on tmpfs may turn it off.
    """

    def __init__(self, path: str | Path, fsync: bool = True):
        self.path = Path(path)
        self.lock_path = self.path.with_suffix(".lock")
        self.fsync = fsync
        self.torn = 0
        self.records: dict[str, dict] = {}  # key -> latest record
        self._file = None
        self._lock: contextlib.ExitStack | None = None
        self._needs_newline = False
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        """Read every whole record (the newest per key wins); count torn lines."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise JudgeError(f"{self.path}: cannot read the journal ({exc.strerror})", exit_code=1) from None
        self.records, self.torn = {}, 0
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
        """Lock the journal, read it again (another run may have added to it), and open it for appending.

        Raises:
            JudgeError: another live run holds the lock (exit status 2, as for a busy training folder),
                or the file or its folder cannot be created or opened (exit status 1); one line naming the path.
        """
        if self._file is not None:
            return self
        lock = contextlib.ExitStack()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock.enter_context(exclusive_lock(self.lock_path, "another `python -m judge run`"))
            if self.path.exists():
                self._load()
            self._file = open(self.path, "ab", buffering=0)  # unbuffered: a failed write leaves nothing queued
        except LockedError as exc:
            lock.close()
            raise JudgeError(str(exc), exit_code=exc.exit_code) from None
        except OSError as exc:
            lock.close()
            where = exc.filename or self.path
            raise JudgeError(f"{where}: cannot open the journal for appending ({os_problem(exc)})", exit_code=1) from None
        except BaseException:
            lock.close()
            raise
        self._lock = lock
        return self

    def append(self, record: dict) -> None:
        """Write one record durably: a whole line, written (and fsynced) before returning.

        Raises:
            JudgeError: exit status 1 when the line cannot be written (a full disk): every record
                appended before is intact; a partly written line is skipped when the journal is read
                and ended before the next record, so a rerun after freeing space resumes cleanly.
        """
        if not isinstance(record, dict) or "key" not in record:
            raise ValueError("a journal record must be a dict with a 'key'")
        if self._file is None:
            self.open()
        line = json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n"
        if self._needs_newline:
            line = b"\n" + line  # end a torn last line; its bytes stay as they were
        try:
            view = memoryview(line)
            while view:
                view = view[self._file.write(view):]
            if self.fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            self._needs_newline = True  # part of the line may be on disk
            raise JudgeError(f"{self.path}: cannot write the journal ({os_problem(exc)}); every judgment "
                             "recorded before is kept; free space and rerun the same command to resume",
                             exit_code=1) from None
        self._needs_newline = False
        self.records[record["key"]] = record

    def close(self) -> None:
        """Close the file and release the lock."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> "Journal":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
