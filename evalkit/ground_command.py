"""``python -m evalkit ground``: the options and the computation; ``evalkit/cli.py`` checks and writes.

``python -m evalkit ground --pairs BASE.jsonl --pairs TUNED.jsonl --db disease-database.csv --out DIR``
reads the pairs files exactly as ``evalkit score`` does (same checks and exclusions), scores every
kept (id, model) against the database and returns the text of ``grounding.jsonl`` (one row per
(id, model)), ``table3.md``, ``table3.json`` and ``exclusions.json``. Nothing is written here.
"""
from __future__ import annotations

import argparse
import json

from evalkit.disease_db import load_disease_db
from evalkit.errors import EvalkitError
from evalkit.grounding import GroundingScorer, ground_systems
from evalkit.records import read_pairs, select_items
from evalkit.table3 import build_table3, render_table3

GROUND_FILES = ("grounding.jsonl", "table3.md", "table3.json", "exclusions.json")


def add_ground_arguments(p: argparse.ArgumentParser) -> None:
    """The ``ground`` subcommand's options (shared ones spelled as in ``evalkit score``)."""
    p.add_argument("--pairs", action="append", required=True, metavar="FILE",
                   help="JSONL of {id, model, prompt, reference, response}; once per system, baseline first")
    p.add_argument("--db", required=True, metavar="CSV",
                   help="disease database (columns idx, disease, Symptom, reason, TestsAndProcedures, "
                        "commonMedications), e.g. ChatDoctor's format_dataset.csv")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--keep-truncated", action="store_true",
                   help="score responses with finish_reason 'length' instead of excluding them")
    p.add_argument("--strict-ids", action="store_true",
                   help="an id missing from a file is an error instead of an exclusion")
    p.add_argument("--seed", type=int, default=0, help="seed of bootstrap and randomisation (default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=10_000, metavar="N", help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--permutations", type=int, default=10_000, metavar="N", help="randomisation sign flips (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite existing result files in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def ground_outputs(args: argparse.Namespace) -> tuple[dict[str, str], dict]:
    """Read, score and tabulate; returns ``{file name: text}`` for ``GROUND_FILES`` and the table.

    The options are checked by ``evalkit/cli.py`` first.

    Raises:
        EvalkitError: bad pairs files or database (one line naming the file and line), or
            no grounded item (no reference names a condition of ``--db``).
    """
    systems = [read_pairs(p) for p in args.pairs]
    db = load_disease_db(args.db)
    selection = select_items(systems, keep_truncated=args.keep_truncated, strict_ids=args.strict_ids)
    scorer = GroundingScorer(db)
    rows, ungrounded = ground_systems(systems, selection, scorer, progress=not args.quiet)
    if len(ungrounded) == len(selection.ids):
        raise EvalkitError.at(args.db, None, f"no grounded item: none of the {len(selection.ids)} scored references "
                              "names a condition of this database (is it the one the data were generated from?)")
    names = db.names()
    database = {"path": str(args.db), "sha256": db.sha256, "conditions": len(names["condition"]),
                "tests": len(names["test"]), "medications": len(names["medication"]),
                "forms": len(scorer.matcher.owners), "n_dropped_forms": len(scorer.matcher.dropped),
                "dropped_forms": scorer.matcher.dropped}
    table = build_table3(rows, systems, selection, ungrounded, database, args.seed, args.bootstrap, args.permutations)
    exclusions = {**selection.to_json(), "n_grounded": table["n"], "n_ungrounded": len(ungrounded),
                  "ungrounded": ungrounded, "ungrounded_rule": "the reference names no condition of the database; "
                  "excluded from Table 3 for every system (rows kept in grounding.jsonl with null scores)",
                  "undefined": _undefined(rows, {u["id"] for u in ungrounded})}
    files = {
        "grounding.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
        "table3.md": render_table3(table),
        "table3.json": json.dumps(table, indent=2) + "\n",
        "exclusions.json": json.dumps(exclusions, indent=2) + "\n",
    }
    return files, table


def _undefined(rows: list[dict], ungrounded: set) -> dict:
    """model -> ratio field -> ids of grounded items where it is null (zero denominator)."""
    out: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        if r["id"] in ungrounded:
            continue
        fields = out.setdefault(r["model"], {f: [] for f in ("tests_recall", "tests_precision",
                                                              "medications_recall", "medications_precision")})
        for f, ids in fields.items():
            if r[f] is None:
                ids.append(r["id"])
    return out
