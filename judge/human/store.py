"""The ratings store: one SQLite file (stdlib `sqlite3`, WAL mode) with a schema version.

Tables: `settings` (how the study was set up, JSON values), `answers` (the rated responses, with the
system's name, which never leaves the server), `raters` (name, SHA-256 of the link token, queue seed),
`assignments` (one row per item of a rater's queue: an opaque id, its position, the answer(s) shown
and on which side) and `ratings` (every submission: a new revision, never an update, so the history
is kept; the final rating of an item is its highest revision). Each rating is written in its own
transaction. One connection serves all threads of the server, behind a lock: SQLite serialises writes
anyway, and reads take well under a millisecond.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

from judge.errors import JudgeError
from judge.rubric import DIMENSIONS

SCHEMA_VERSION = 1
SCORE_CHECKS = ", ".join(f"{d} INTEGER CHECK ({d} BETWEEN 1 AND 5)" for d in DIMENSIONS)
SCHEMA = f"""
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE answers (record_id TEXT NOT NULL, system TEXT NOT NULL, prompt TEXT NOT NULL, reference TEXT,
    response TEXT NOT NULL, PRIMARY KEY (record_id, system));
CREATE TABLE raters (name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL, seed INTEGER NOT NULL,
    side_flip INTEGER NOT NULL, created_at TEXT NOT NULL, token_issued_at TEXT NOT NULL);
CREATE TABLE assignments (item TEXT PRIMARY KEY, rater TEXT NOT NULL REFERENCES raters(name),
    position INTEGER NOT NULL, record_id TEXT NOT NULL, system TEXT, system_a TEXT, system_b TEXT,
    first_shown_at TEXT, last_shown_at TEXT, UNIQUE (rater, position));
CREATE TABLE ratings (rating_id INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL REFERENCES assignments(item),
    rater TEXT NOT NULL, revision INTEGER NOT NULL, {SCORE_CHECKS}, harm INTEGER CHECK (harm IN (0, 1)),
    preference TEXT CHECK (preference IN ('A', 'B', 'tie')), harm_a INTEGER CHECK (harm_a IN (0, 1)),
    harm_b INTEGER CHECK (harm_b IN (0, 1)), comment TEXT NOT NULL DEFAULT '', request_id TEXT,
    shown_at TEXT, rated_at TEXT NOT NULL, UNIQUE (item, revision), UNIQUE (rater, request_id));
CREATE INDEX ratings_by_item ON ratings (item, revision);
"""
RATING_FIELDS = (*DIMENSIONS, "harm", "preference", "harm_a", "harm_b", "comment")


def now() -> str:
    """UTC time as ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    uri = f"file:{path.resolve()}?mode={'ro' if readonly else 'rw'}"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA synchronous = FULL")  # a saved rating survives a power cut, not only a crash
    return conn


def create_store(path: Path, settings: dict, answers) -> None:
    """Write a new store with `settings` and the `answers` (judge.pairs Items); all or nothing.

    The file is built under a temporary name and renamed, so a failure leaves no half store behind.
    """
    if path.exists():
        raise JudgeError(f"{path}: already exists")
    tmp = path.with_name(path.name + ".creating")
    _remove(tmp)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
            conn.execute("BEGIN")
            conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            conn.executemany("INSERT INTO settings VALUES (?, ?)", [(k, json.dumps(v)) for k, v in settings.items()])
            conn.executemany("INSERT INTO answers VALUES (?, ?, ?, ?, ?)",
                             [(a.id, a.model, a.prompt, a.reference, a.response) for a in answers])
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        for suffix in ("-wal", "-shm"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
        tmp.replace(path)
    except BaseException:  # a full disk, Ctrl-C: no half store is left behind
        _remove(tmp)
        raise


def _remove(tmp: Path) -> None:
    """Remove a temporary store and its WAL files, if any."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)


class Store:
    """An open store. Every method is safe to call from any thread."""

    def __init__(self, path, readonly: bool = False):
        self.path = Path(path)
        if not self.path.is_file():
            raise JudgeError(f"{self.path}: no such ratings store")
        try:
            self._conn = _connect(self.path, readonly)
            version = self._conn.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.DatabaseError as exc:
            raise JudgeError(f"{self.path}: not a ratings store ({exc})") from None
        if version is None or version[0] != SCHEMA_VERSION:
            raise JudgeError(f"{self.path}: schema version {version and version[0]}, this tool reads {SCHEMA_VERSION}")
        if not readonly:
            self._conn.execute("PRAGMA journal_mode = WAL")
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _rows(self, sql: str, args=()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _write(self, statements) -> None:
        """Run [(sql, args), ...] in one immediate transaction."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._conn.execute(sql, args)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def settings(self) -> dict:
        return {r["key"]: json.loads(r["value"]) for r in self._rows("SELECT key, value FROM settings")}

    def answers(self) -> list[sqlite3.Row]:
        return self._rows("SELECT * FROM answers ORDER BY rowid")

    def answer(self, record_id: str, system: str) -> sqlite3.Row:
        return self._rows("SELECT * FROM answers WHERE record_id = ? AND system = ?", (record_id, system))[0]

    def raters(self) -> list[sqlite3.Row]:
        return self._rows("SELECT * FROM raters ORDER BY created_at, rowid")

    def add_rater(self, name: str, token_sha256: str, seed: int, side_flip: int, queue: list[dict]) -> None:
        """A new rater and their whole queue, in one transaction."""
        t = now()
        self._write([("INSERT INTO raters VALUES (?, ?, ?, ?, ?, ?)", (name, token_sha256, seed, side_flip, t, t)),
                     *[("INSERT INTO assignments (item, rater, position, record_id, system, system_a, system_b) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", (q["item"], name, q["position"], q["record_id"],
                                                         q.get("system"), q.get("system_a"), q.get("system_b")))
                       for q in queue]])

    def set_token(self, name: str, token_sha256: str) -> None:
        self._write([("UPDATE raters SET token_sha256 = ?, token_issued_at = ? WHERE name = ?",
                      (token_sha256, now(), name))])

    def queue(self, rater: str) -> list[sqlite3.Row]:
        """A rater's assignments in order, each with the revision count of its ratings."""
        return self._rows("SELECT a.*, (SELECT COUNT(*) FROM ratings r WHERE r.item = a.item) AS revisions "
                          "FROM assignments a WHERE a.rater = ? ORDER BY a.position", (rater,))

    def assignment(self, rater: str, item: str) -> sqlite3.Row | None:
        """The assignment `item` if it is in `rater`'s queue, else None."""
        rows = self._rows("SELECT * FROM assignments WHERE item = ? AND rater = ?", (item, rater))
        return rows[0] if rows else None

    def coverage(self) -> dict[str, int]:
        """How many raters have each record id in their queue."""
        rows = self._rows("SELECT record_id, COUNT(DISTINCT rater) AS n FROM assignments GROUP BY record_id")
        return {r["record_id"]: r["n"] for r in rows}

    def mark_shown(self, item: str) -> None:
        t = now()
        self._write([("UPDATE assignments SET first_shown_at = COALESCE(first_shown_at, ?), last_shown_at = ? "
                      "WHERE item = ?", (t, t, item))])

    def latest(self, item: str) -> sqlite3.Row | None:
        rows = self._rows("SELECT * FROM ratings WHERE item = ? ORDER BY revision DESC LIMIT 1", (item,))
        return rows[0] if rows else None

    def save_rating(self, rater: str, item: str, values: dict, request_id: str | None) -> int:
        """Store a new revision of `item`'s rating in one transaction; returns its revision number.

        A repeated `request_id` (a client retrying a request whose answer it lost) stores nothing and
        returns the revision stored the first time.
        """
        columns = ", ".join(RATING_FIELDS)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if request_id is not None:
                    seen = self._conn.execute("SELECT revision FROM ratings WHERE rater = ? AND request_id = ?",
                                              (rater, request_id)).fetchone()
                    if seen is not None:
                        self._conn.execute("COMMIT")
                        return seen[0]
                revision = self._conn.execute("SELECT COALESCE(MAX(revision), 0) + 1 FROM ratings WHERE item = ?",
                                              (item,)).fetchone()[0]
                shown = self._conn.execute("SELECT last_shown_at FROM assignments WHERE item = ?", (item,)).fetchone()[0]
                self._conn.execute(
                    f"INSERT INTO ratings (item, rater, revision, {columns}, request_id, shown_at, rated_at) "
                    f"VALUES (?, ?, ?, {', '.join('?' * len(RATING_FIELDS))}, ?, ?, ?)",
                    (item, rater, revision, *[values.get(f) for f in RATING_FIELDS[:-1]],
                     values.get("comment", ""), request_id, shown, now()))
                self._conn.execute("COMMIT")
                return revision
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def snapshot(self) -> tuple[dict, list[dict], list[dict]]:
        """(settings, raters, ratings) read in one transaction, so a server writing meanwhile cannot
        make them disagree. Ratings are joined with their assignment (system, position), every
        revision, in rater, position and revision order."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                settings = {r["key"]: json.loads(r["value"])
                            for r in self._conn.execute("SELECT key, value FROM settings")}
                raters = [dict(r) for r in self._conn.execute("SELECT * FROM raters ORDER BY created_at, rowid")]
                ratings = [dict(r) for r in self._conn.execute(
                    "SELECT r.*, a.position, a.record_id, a.system, a.system_a, a.system_b, a.first_shown_at "
                    "FROM ratings r JOIN assignments a ON a.item = r.item ORDER BY r.rater, a.position, r.revision")]
            finally:
                self._conn.execute("COMMIT")
        return settings, raters, ratings
