"""The record format that joins the stages, its one reader, and the explicit decision of which items are excluded.

One line per item: ``{"id": str, "model": str, "prompt": str, "reference": str, "response": str}``
plus optional ``"finish_reason": "stop" | "length"`` and ``"meta": {...}``. One file per system. The
generation stage writes it; Track A, grounding, Track B (`judge.pairs`) and Track C (`judge.human`)
read it here, with `read_pairs`.

Exclusions are never silent: an item is excluded when its response is empty (or whitespace only),
was truncated (``finish_reason == "length"``: it hit ``max_new_tokens``), is missing for a system, or
is too long to score ("too_long": ROUGE-L's LCS would need more than ``LCS_CELL_LIMIT`` = 1e11 cells,
response tokens x reference tokens; a 20 MB response against a reference of 30,000 tokens). Each
exclusion is listed with id, system and reason; by default an item excluded for any system is
excluded for all, so that the systems are compared on the same items (paired).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from plumbing.files import input_problem

from evalkit.errors import EvalkitError
from evalkit.rouge import LCS_CELL_LIMIT, lcs_too_long

REQUIRED = ("id", "model", "prompt", "reference", "response")
FINISH_REASONS = ("stop", "length")
REASONS = ("empty", "truncated", "missing", "too_long")


@dataclass(frozen=True)
class Record:
    """One system's response to one held-out item, with where it came from (`path`, 1-based `line`).

    `reference` is None only when the file was read with `need_reference=False` (the LLM judge and the
    clinicians can judge answers without a physician's reference).
    """

    id: str
    model: str
    prompt: str
    reference: str | None
    response: str
    finish_reason: str | None = None
    meta: dict = field(default_factory=dict)
    path: str = ""
    line: int = 0


@dataclass
class System:
    """All records of one ``--pairs`` file, in file order, indexed by id."""

    model: str
    path: str
    records: dict[str, Record]


def read_input(path: str) -> bytes:
    """The bytes of an input file (pairs, database); EvalkitError ``"<file>: <problem>"`` when it is
    missing, not a regular file or unreadable."""
    problem = input_problem(path)
    if problem:
        raise EvalkitError.at(path, None, problem)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise EvalkitError.at(path, None, f"cannot read: {e.strerror or e}") from None


def read_pairs(path: str | Path, need_reference: bool = True) -> System:
    """Parse and validate one JSONL pairs file.

    Args:
        path: the file (UTF-8 JSONL, one system).
        need_reference: False accepts records without a "reference" (their `reference` is None).

    Raises:
        EvalkitError: ``"<file>:<line>: <problem>"`` for invalid JSON, a non-object line, a missing
            field, a wrong type, an unknown ``finish_reason``, a duplicate id or a second model name;
            ``"<file>: <problem>"`` when the file cannot be read or holds no record.
    """
    path = str(path)
    data = read_input(path)
    try:
        lines = data.decode("utf-8").split("\n")  # not splitlines(): JSON strings may hold U+2028 raw
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise EvalkitError.at(path, lineno, f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); "
                              "pairs files must be UTF-8 JSONL") from None
    records: dict[str, Record] = {}
    model = None
    for lineno, text in enumerate(lines, start=1):
        text = text.removesuffix("\r")
        if not text.strip():
            continue  # blank lines (e.g. a trailing newline) carry no record
        rec = _parse_line(path, lineno, text, need_reference)
        if model is None:
            model = rec.model
        elif rec.model != model:  # before the id check: two concatenated systems repeat every id
            raise EvalkitError.at(path, lineno, f"model {rec.model!r} differs from {model!r} of the first "
                                  "record; give each system its own --pairs file")
        if rec.id in records:
            raise EvalkitError.at(path, lineno, f"duplicate id {rec.id!r} (first on line {records[rec.id].line})")
        records[rec.id] = rec
    if model is None:
        raise EvalkitError.at(path, None, "no records (empty file)")
    return System(model, path, records)


def _parse_line(path: str, lineno: int, text: str, need_reference: bool = True) -> Record:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise EvalkitError.at(path, lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:  # e.g. '[' * 100000: deeper than Python's parser goes; no record is like this
        raise EvalkitError.at(path, lineno, "invalid record: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise EvalkitError.at(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
    for key in REQUIRED:
        if key == "reference" and not need_reference and obj.get(key) is None:
            continue
        if key not in obj:
            raise EvalkitError.at(path, lineno, f"missing field {key!r}")
        if not isinstance(obj[key], str):
            raise EvalkitError.at(path, lineno, f"field {key!r} must be a string, got {_json_type(obj[key])}")
    if not obj["id"]:
        raise EvalkitError.at(path, lineno, "field 'id' is empty")
    finish = obj.get("finish_reason")
    if finish is not None and finish not in FINISH_REASONS:
        raise EvalkitError.at(path, lineno, f"field 'finish_reason' must be 'stop' or 'length', got {finish!r}")
    meta = obj.get("meta", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise EvalkitError.at(path, lineno, f"field 'meta' must be an object, got {_json_type(meta)}")
    return Record(obj["id"], obj["model"], obj["prompt"], obj.get("reference"), obj["response"], finish, meta,
                  path, lineno)


def _json_type(value: object) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


@dataclass
class Selection:
    """The items every system is scored on, and everything left out with its reason.

    Attributes:
        ids: kept item ids, in the baseline file's order (then the order other files add them).
        exclusions: one entry per (id, model, reason): ``{"id", "model", "reason", "file", "line"}``
            (``line`` is null for a missing record).
        excluded_ids: ids dropped for all systems (paired mode).
        kept_truncated: entries kept despite truncation (``keep_truncated=True``).
        n_ids: number of distinct ids over all files.
    """

    ids: list[str]
    exclusions: list[dict] = field(default_factory=list)
    excluded_ids: list[str] = field(default_factory=list)
    kept_truncated: list[dict] = field(default_factory=list)
    n_ids: int = 0

    def counts(self) -> dict[str, int]:
        """Number of (id, model) exclusions per reason."""
        return {r: sum(1 for e in self.exclusions if e["reason"] == r) for r in REASONS}

    def to_json(self) -> dict:
        return {"n_ids": self.n_ids, "n_kept": len(self.ids), "n_excluded": len(self.excluded_ids),
                "excluded_ids": self.excluded_ids, "counts": self.counts(), "exclusions": self.exclusions,
                "kept_truncated": self.kept_truncated,
                "rule": "an item excluded for any system is excluded for all (paired comparison)",
                "too_long_rule": f"response tokens x reference tokens > {LCS_CELL_LIMIT:.0e} (ROUGE-L's LCS "
                                 "table; about 10 s of work on one core)"}


def select_items(systems: Sequence[System], keep_truncated: bool = False, strict_ids: bool = False) -> Selection:
    """Decide the paired item set; check that shared ids name the same item in every file.

    Args:
        systems: one per ``--pairs`` file; the first is the baseline.
        keep_truncated: score truncated responses instead of excluding them (still listed).
        strict_ids: an id absent from some file is an error instead of a "missing" exclusion.

    Raises:
        EvalkitError: when the same id has a different reference in two files (the ids do not name
            the same held-out pair; prompts may differ, each system has its own template), when
            ``strict_ids`` and the id sets differ, when two files carry the same model name, or when
            no item is left.
    """
    systems = list(systems)
    seen_models: dict[str, str] = {}
    for s in systems:
        if s.model in seen_models:
            raise EvalkitError.at(s.path, None, f"model {s.model!r} is also the model of {seen_models[s.model]}")
        seen_models[s.model] = s.path
    order: list[str] = []
    first: dict[str, Record] = {}
    for s in systems:
        for rec in s.records.values():
            if rec.id not in first:
                first[rec.id] = rec
                order.append(rec.id)
                continue
            ref = first[rec.id]
            if rec.reference != ref.reference:  # prompts may differ (each system's own template)
                raise EvalkitError.at(rec.path, rec.line, f"id {rec.id!r} has a different reference than in "
                                      f"{ref.path}:{ref.line}; the same id must name the same item")
    sel = Selection(ids=[], n_ids=len(order))
    dropped = set()
    for item_id in order:
        for s in systems:
            rec = s.records.get(item_id)
            reason = None
            if rec is None:
                if strict_ids:
                    where = first[item_id]
                    raise EvalkitError.at(where.path, where.line, f"id {item_id!r} is not in {s.path} "
                                          "(--strict-ids: every file must hold the same ids)")
                reason = "missing"
            elif not rec.response.strip():
                reason = "empty"
            elif rec.finish_reason == "length" and not keep_truncated:
                reason = "truncated"
            elif lcs_too_long(rec.response, rec.reference):
                reason = "too_long"
            elif rec.finish_reason == "length":
                sel.kept_truncated.append({"id": item_id, "model": s.model, "reason": "truncated",
                                           "file": rec.path, "line": rec.line})
            if reason is not None:
                sel.exclusions.append({"id": item_id, "model": s.model, "reason": reason,
                                       "file": s.path if rec is None else rec.path,
                                       "line": None if rec is None else rec.line})
                dropped.add(item_id)
    sel.ids = [i for i in order if i not in dropped]
    sel.excluded_ids = [i for i in order if i in dropped]
    if not sel.ids:
        raise EvalkitError.at(systems[0].path, None, f"no item left to score: all {len(order)} ids are excluded "
                              f"({sel.counts()}) or the files share no id")
    return sel


def check_scoring_input(who: str, systems, selection) -> None:
    """ValueError unless every system holds every id of `selection` (as when `select_items` built it
    from them): the scorers' common check."""
    missing = [(s.path, i) for s in systems for i in selection.ids if i not in s.records]
    if missing:
        raise ValueError(f"{who}: selection id {missing[0][1]!r} is not in {missing[0][0]}; build the selection "
                         "from these systems with evalkit.select_items")
