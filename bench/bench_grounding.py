"""Benchmark: all 5,452 GenMedGPT-5k references grounded against themselves, one compiled trie vs per-form scans.

Both sides run the same ``GroundingScorer`` on the same 5,452 (reference, reference) pairs; only the
matcher differs. Ours: ``evalkit.names.NameMatcher``, one word trie over every name form, read once
per text. Reference: the naive approach the trie replaces, one whole-word substring scan per name
form (3,269 forms for 796 conditions, 171 tests and 1,289 medications) over every text, then the
same longest-match-first choice. Both see the same word keys and owners, so their results
must be identical (checked). The process pins itself to one core; times are wall and CPU seconds.

    python bench/bench_grounding.py [--limit N]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from evalkit import GroundingScorer, load_disease_db
from evalkit.names import words

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class NaiveMatcher:
    """One substring scan per name form over a text's word keys; the same owners and longest-first rule."""

    def __init__(self, owners: dict[tuple[str, ...], tuple[str, str]], categories: tuple[str, ...]):
        self.categories = categories
        self.forms = [(" " + " ".join(k) + " ", len(k), owner) for k, owner in owners.items()]

    def named(self, text: str) -> dict[str, list[str]]:
        ws = words(text)
        keys = " " + " ".join(k for k, _, _ in ws) + " "  # padded: " form " only matches whole words
        word_at, pos = {}, 0
        for i, (k, _, _) in enumerate(ws):
            word_at[pos] = i
            pos += len(k) + 1
        longest: dict[int, tuple[int, tuple[str, str]]] = {}
        for form, n, owner in self.forms:  # one scan of the text per name form
            at = keys.find(form)
            while at >= 0:
                i = word_at[at]
                if n > longest.get(i, (0,))[0]:
                    longest[i] = (n, owner)
                at = keys.find(form, at + 1)
        out: dict[str, dict[str, None]] = {c: {} for c in self.categories}
        i = 0
        while i < len(ws):
            if i in longest:
                n, (category, name) = longest[i]
                out[category][name] = None
                i += n
            else:
                i += 1
        return {c: list(v) for c, v in out.items()}


def self_scores(scorer: GroundingScorer, refs: list[str]) -> tuple[float, float, list[dict]]:
    w0, c0 = time.perf_counter(), time.process_time()
    rows = [scorer.score(r, r) for r in refs]
    return time.perf_counter() - w0, time.process_time() - c0, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="use the first N references only")
    args = parser.parse_args(argv)
    db_path, gen_path = DATA / "disease-database.csv", DATA / "genmedgpt-5k.json"
    for path in (db_path, gen_path):
        if not path.is_file():
            print(f"error: {path}: not found (see ../shared/data/README.md)", file=sys.stderr)
            return 2
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    refs = [r["output"] for r in json.loads(gen_path.read_text(encoding="utf-8"))][:args.limit]
    db = load_disease_db(db_path)
    t0 = time.perf_counter()
    ours = GroundingScorer(db)
    build = time.perf_counter() - t0
    naive = GroundingScorer(db)
    naive.matcher = NaiveMatcher(ours.matcher.owners, ours.matcher.categories)
    print(f"{len(refs)} GenMedGPT-5k references scored against themselves; {len(ours.matcher.owners)} name forms "
          f"(trie built in {build * 1000:.0f} ms); one core")
    ours_wall, ours_cpu, ours_rows = self_scores(ours, refs)
    print(f"  evalkit trie:           {ours_wall:7.2f} s wall {ours_cpu:7.2f} s CPU "
          f"({'under' if ours_wall < 5 else 'OVER'} the 5 s target)")
    ref_wall, ref_cpu, ref_rows = self_scores(naive, refs)
    print(f"  naive per-form scans:   {ref_wall:7.2f} s wall {ref_cpu:7.2f} s CPU")
    print(f"speed-up (naive / trie): {ref_wall / ours_wall:.1f}x wall, {ref_cpu / ours_cpu:.1f}x CPU")
    same = ours_rows == ref_rows
    grounded = sum(r["reference_condition"] is not None for r in ours_rows)
    print(f"identical rows: {same}; coverage {grounded}/{len(refs)} = {grounded / len(refs):.1%}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
