"""Read the JSONL pairs files shared with evalkit and check that the systems answer the same items."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from judge.errors import JudgeError

REQUIRED = ("id", "model", "prompt", "response")


@dataclass(frozen=True)
class Item:
    """One system's response to one held-out question (a line of a pairs file)."""

    id: str
    model: str
    prompt: str
    response: str
    reference: str | None = None

    def __post_init__(self) -> None:
        for name in ("id", "model", "prompt", "response"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"Item.{name} must be a string, got {type(getattr(self, name)).__name__}")
        if self.reference is not None and not isinstance(self.reference, str):
            raise TypeError(f"Item.reference must be a string or None, got {type(self.reference).__name__}")


def read_pairs(paths: list[str | Path]) -> list[Item]:
    """All records of the given files, validated.

    Raises:
        JudgeError: `<file>:<line>: <problem>` for invalid JSON, a missing or non-string field, a
            repeated (id, model) or one id whose question differs between records; `<file>: <problem>`
            for an unreadable file, a file with no records, or systems that cover different ids.
    """
    if isinstance(paths, (str, Path)) or not isinstance(paths, (list, tuple)) or \
            not all(isinstance(p, (str, Path)) for p in paths):
        raise TypeError(f"read_pairs takes a list of file paths (one per system), got {type(paths).__name__}"
                        + (f"; wrap it: read_pairs([{str(paths)!r}])" if isinstance(paths, (str, Path)) else ""))
    if not paths:
        raise JudgeError("read_pairs: no pairs file given")
    items: list[Item] = []
    seen: dict[tuple[str, str], str] = {}
    for path in map(Path, paths):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise JudgeError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
        before = len(items)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JudgeError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise JudgeError(f"{where}: expected a JSON object")
            for name in REQUIRED:
                if not isinstance(record.get(name), str):
                    problem = "missing" if name not in record else "not a string"
                    raise JudgeError(f"{where}: field {name!r} is {problem}")
            reference = record.get("reference")
            key = (record["id"], record["model"])
            if key in seen:
                raise JudgeError(f"{where}: id {key[0]!r} of model {key[1]!r} already appeared in {seen[key]}")
            seen[key] = where
            items.append(Item(record["id"], record["model"], record["prompt"], record["response"],
                              reference if isinstance(reference, str) else None))
        if len(items) == before:
            raise JudgeError(f"{path}: no records (empty file)")
    _check_paired(items, seen)
    return items


def _check_paired(items: list[Item], seen: dict) -> None:
    """Every system must answer the same ids, with the same question for the same id."""
    ids_by_model: dict[str, set[str]] = {}
    question: dict[str, tuple[str, str]] = {}
    for item in items:
        ids_by_model.setdefault(item.model, set()).add(item.id)
        first = question.setdefault(item.id, (item.prompt, seen[(item.id, item.model)]))
        if first[0] != item.prompt:
            raise JudgeError(f"{seen[(item.id, item.model)]}: id {item.id!r} has a different prompt than in {first[1]}")
    models = list(ids_by_model)
    file_of = {item.model: seen[(item.id, item.model)].rsplit(":", 1)[0] for item in reversed(items)}
    for model in models[1:]:
        base = models[0]
        unmatched = ids_by_model[base] ^ ids_by_model[model]
        if unmatched:
            example = sorted(unmatched)[0]
            lacking, having = (model, base) if example in ids_by_model[base] else (base, model)
            raise JudgeError(f"{file_of[lacking]}: model {lacking!r} has no record for id {example!r} that "
                             f"model {having!r} has in {file_of[having]} ({len(unmatched)} unmatched ids; the "
                             "judged systems must answer the same ids)")


def models_in_order(items: list[Item]) -> list[str]:
    """Model names in order of first appearance (the first is the baseline of Table 2)."""
    return list(dict.fromkeys(item.model for item in items))


def sample_ids(items: list[Item], limit: int | None, seed: int) -> list[Item]:
    """Keep `limit` ids drawn at random with `seed` (the paper judged a random N = 20), all systems each."""
    ids = list(dict.fromkeys(item.id for item in items))
    if limit is None or limit >= len(ids):
        return items
    keep = set(random.Random(seed).sample(ids, limit))
    return [item for item in items if item.id in keep]
