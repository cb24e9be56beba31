"""The answers to judge: the pairs files read with the one reader (`evalkit.records.read_pairs`), then the
judges' own rule: every system answers the same questions, each question the same for every system."""
from __future__ import annotations

import random
from pathlib import Path

from evalkit.records import Record, read_pairs

from judge.errors import JudgeError


def paired_records(paths: list[str | Path]) -> list[Record]:
    """All records of the given files (one per system, the baseline first), checked as a paired set.

    A reference is optional here (the judges can judge without one).

    Raises:
        EvalkitError: `<file>:<line>: <problem>` for a malformed record (as `evalkit score` reports it).
        JudgeError: no file given, two files of one model, systems that cover different ids, or one id whose
            question differs between systems.
    """
    if not paths:
        raise JudgeError("paired_records: no pairs file given")
    systems = [read_pairs(p, need_reference=False) for p in paths]
    first_file: dict[str, str] = {}
    for system in systems:
        if system.model in first_file:
            raise JudgeError(f"{system.path}: model {system.model!r} is also the model of {first_file[system.model]}")
        first_file[system.model] = system.path
    _check_paired(systems)
    return [record for system in systems for record in system.records.values()]


def _check_paired(systems) -> None:
    """Every system must answer the same ids, with the same question for the same id."""
    base = systems[0]
    for system in systems:
        for record in system.records.values():
            first = base.records.get(record.id)
            if first is not None and first.prompt != record.prompt:
                raise JudgeError(f"{record.path}:{record.line}: id {record.id!r} has a different prompt than in "
                                 f"{first.path}:{first.line}")
    for system in systems[1:]:
        unmatched = set(base.records) ^ set(system.records)
        if unmatched:
            example = sorted(unmatched)[0]
            lacking, having = (system, base) if example in base.records else (base, system)
            raise JudgeError(f"{lacking.path}: model {lacking.model!r} has no record for id {example!r} that "
                             f"model {having.model!r} has in {having.path} ({len(unmatched)} unmatched ids; the "
                             "judged systems must answer the same ids)")


def models_in_order(records: list[Record]) -> list[str]:
    """Model names in order of first appearance (the first is the baseline of Table 2)."""
    return list(dict.fromkeys(record.model for record in records))


def sample_ids(records: list[Record], limit: int | None, seed: int) -> list[Record]:
    """Keep `limit` ids drawn at random with `seed` (the paper judged a random N = 20), all systems each."""
    ids = list(dict.fromkeys(record.id for record in records))
    if limit is None or limit >= len(ids):
        return records
    keep = set(random.Random(seed).sample(ids, limit))
    return [record for record in records if record.id in keep]
