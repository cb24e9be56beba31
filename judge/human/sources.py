"""The other tracks' per-item files that Track C is compared with, keyed by (id, system).

* `--judgments`: the LLM judge's `judgments.jsonl` (`python -m judge run`): rows with `status == "ok"`,
  the four dimensions (finite numbers: NaN or Infinity is refused) averaged over repeats.
* `--scores`: evalkit's `scores.jsonl` (`python -m evalkit score`): one row per (id, model) with
  `bleu, rouge1, rouge2, rougeL, meteor`.
* `--grounding`: `grounding.jsonl`: one row per (id, model) with numeric fields (e.g.
  `diagnosis_correct`, `tests_recall`); every numeric or true/false field is a measure (true = 1).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import mean

from judge.errors import JudgeError
from judge.rubric import DIMENSIONS

Key = tuple[str, str]
_NOT_MEASURES = {"id", "model", "repeat"}


def _rows(path, flag: str) -> list[tuple[int, dict]]:
    """(line number, object) of each non-blank line; one-line errors name the flag, file and line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise JudgeError(f"{flag}: {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JudgeError(f"{flag}: {path}:{number}: invalid JSON ({exc.msg})") from None
        except RecursionError:  # '[' * 100000: deeper than Python's recursion limit
            raise JudgeError(f"{flag}: {path}:{number}: invalid JSON (nested too deeply)") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or not isinstance(row.get("model"), str):
            raise JudgeError(f"{flag}: {path}:{number}: expected an object with string fields 'id' and 'model'")
        rows.append((number, row))
    if not rows:
        raise JudgeError(f"{flag}: {path}: no records (empty file)")
    return rows


def read_judgments(path) -> dict[Key, dict[str, float]]:
    """{(id, model): {dimension: mean over the judge's ok repeats}}."""
    by_key: dict[Key, list[dict]] = {}
    for number, row in _rows(path, "--judgments"):
        if row.get("status") != "ok":
            continue
        for d in DIMENSIONS:
            if type(row.get(d)) not in (int, float):
                raise JudgeError(f"--judgments: {path}:{number}: field {d!r} is not a number")
            if not math.isfinite(row[d]):  # JSON's NaN / Infinity: no score, and no mean or rank with it
                raise JudgeError(f"--judgments: {path}:{number}: field {d!r} is {row[d]}, not a finite score")
        by_key.setdefault((row["id"], row["model"]), []).append(row)
    return {k: {d: float(mean(r[d] for r in rs)) for d in DIMENSIONS} for k, rs in by_key.items()}


def read_measures(path, flag: str) -> tuple[dict[Key, dict[str, float]], list[str]]:
    """({(id, model): {field: value}}, fields in order of first appearance) of numeric per-item files."""
    out: dict[Key, dict[str, float]] = {}
    fields: dict[str, None] = {}
    for number, row in _rows(path, flag):
        key = (row["id"], row["model"])
        if key in out:
            raise JudgeError(f"{flag}: {path}:{number}: id {key[0]!r} of model {key[1]!r} appears twice")
        values = {}
        for name, value in row.items():
            if name in _NOT_MEASURES or not isinstance(value, (bool, int, float)):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                continue
            values[name] = float(value)
            fields.setdefault(name, None)
        out[key] = values
    if not fields:
        raise JudgeError(f"{flag}: {path}: no numeric fields besides id and model")
    return out, list(fields)
