"""Who rates what, in which order, with which answer on which side.

* Ids per rater: every rater gets every question id by default. With `per_rater = N`, each rater gets N
  ids, drawn so that the ids are covered as evenly as possible (the least-covered ids first, ties broken
  by one seeded random order of the ids), which also spreads the overlap that agreement needs.
* Order: each rater's items are shuffled with the rater's own seed, derived from the study seed and the
  rater's name and recorded in the store, so every queue can be rebuilt and audited.
* Pointwise: an item is one system's answer to one question. Pairwise: an item is two systems' answers
  to the same question, shown as A and B; for each pair of systems, the side of the first system
  alternates along the rater's queue, starting on a side drawn from the rater's seed, so each system is
  shown as A in half of the comparisons (to within one) for every rater.
* Item ids sent to the browser are random (`secrets`), so they tell nothing about the system.
"""
from __future__ import annotations

import hashlib
import random
import secrets
from itertools import combinations


def rater_seed(seed: int, rater: str) -> int:
    """The rater's queue seed: the first 63 bits of SHA-256("<study seed>:<rater>")."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{rater}".encode()).digest()[:8], "big") >> 1


def choose_ids(ids: list[str], coverage: dict[str, int], per_rater: int | None, seed: int) -> list[str]:
    """The ids of a new rater's queue, given how many raters already have each id (`coverage`)."""
    if per_rater is None or per_rater >= len(ids):
        return list(ids)
    order = list(ids)
    random.Random(seed).shuffle(order)  # one fixed tie-break order for the whole study
    rank = {i: n for n, i in enumerate(order)}
    return sorted(ids, key=lambda i: (coverage.get(i, 0), rank[i]))[:per_rater]


def build_queue(ids: list[str], systems: list[str], pairwise: bool, seed: int) -> tuple[list[dict], int]:
    """A rater's shuffled queue and the side flip used (0 or 1; pairwise only, else 0).

    Returns dicts with `item` (opaque), `position` (1-based), `record_id` and either `system`
    (pointwise) or `system_a` and `system_b` (pairwise).
    """
    rng = random.Random(seed)
    if pairwise:
        units = [{"record_id": i, "pair": pair} for i in ids for pair in combinations(systems, 2)]
    else:
        units = [{"record_id": i, "system": s} for i in ids for s in systems]
    rng.shuffle(units)
    flip = rng.randrange(2) if pairwise else 0
    seen_pairs: dict[tuple[str, str], int] = {}
    queue = []
    for position, unit in enumerate(units, start=1):
        entry = {"item": secrets.token_urlsafe(12), "position": position, "record_id": unit["record_id"]}
        if pairwise:
            first, second = unit["pair"]
            k = seen_pairs.get(unit["pair"], 0)
            seen_pairs[unit["pair"]] = k + 1
            a, b = (first, second) if (k + flip) % 2 == 0 else (second, first)
            entry.update(system_a=a, system_b=b)
        else:
            entry["system"] = unit["system"]
        queue.append(entry)
    return queue, flip
