"""Track A and grounding as functions: read the pairs files, compute, write the result files.

    table1 = evalkit.score_files(["base.jsonl", "tuned.jsonl"], "track_a", ScoreConfig())
    table3 = evalkit.ground_files(["base.jsonl", "tuned.jsonl"], "disease-database.csv", "grounding")

`python -m evalkit score|ground` (`cli.py`) parses its flags into these arguments and calls them; so does the
pipeline. Everything is computed before anything is written; the files are written together, all or none
(`plumbing.durable.write_files_atomic`), and existing results are only replaced with `force`.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from plumbing.durable import write_files_atomic
from plumbing.errors import os_problem
from plumbing.files import folder_problem
from plumbing.flags import at_least, check_fields, knob

from evalkit.disease_db import load_disease_db
from evalkit.errors import EvalkitError
from evalkit.grounding import GroundingScorer, ground_systems
from evalkit.plots import FIGURE_SKIPPED, figure_names, figure_writers, matplotlib_available
from evalkit.records import read_pairs, select_items
from evalkit.score import METRICS, ScoreConfig, score_systems
from evalkit.table import build_tables, render_markdown
from evalkit.table3 import build_table3, render_table3

SCORE_FILES = ("scores.csv", "scores.jsonl", "exclusions.json", "table1.md", "table1.json")
GROUND_FILES = ("grounding.jsonl", "table3.md", "table3.json", "exclusions.json")


@dataclass(frozen=True)
class RunOptions:
    """What `score_files` and `ground_files` share besides the metric settings.

    Attributes:
        keep_truncated: score responses with finish_reason "length" instead of excluding them.
        strict_ids: an id missing from a file is an error instead of an exclusion.
        seed: seed of the bootstrap, the randomisation test and the figures' jitter.
        bootstrap, permutations: resamples of the paired bootstrap and sign flips of the randomisation test.
        figures: draw the distribution figures (`score` only; skipped without matplotlib).
        force: replace existing result files.
        progress: show a progress bar.
    """

    keep_truncated: bool = knob(False, "score responses with finish_reason 'length' instead of excluding them")
    strict_ids: bool = knob(False, "an id missing from a file is an error instead of an exclusion")
    seed: int = knob(0, "seed of bootstrap, randomisation and plot jitter (default: %(default)s)",
                     check=at_least(0))
    bootstrap: int = knob(10_000, "bootstrap resamples (default: %(default)s)", check=at_least(1), metavar="N")
    permutations: int = knob(10_000, "randomisation sign flips (default: %(default)s)", check=at_least(1),
                             metavar="N")
    figures: bool = knob(True, "do not draw the distribution figures", flag="--no-figures")
    force: bool = knob(False, "overwrite existing result files in DIR")
    progress: bool = knob(True, "no progress bar or summary", flag="--quiet")

    def check(self, out: Path) -> None:
        """Every option checked before anything is read, computed or written."""
        check_fields(self, EvalkitError)
        problem = folder_problem(out)
        if problem:
            raise EvalkitError(f"--out {out}: {problem}")


def _check_call(who: str, pairs, out, options) -> Path:
    """The Python API's types (TypeError, as evalkit's other functions); returns `out` as a Path."""
    if isinstance(pairs, (str, os.PathLike)) or not isinstance(pairs, (list, tuple)) or not pairs or \
            not all(isinstance(p, (str, os.PathLike)) for p in pairs):
        raise TypeError(f"{who} takes a non-empty list of pairs file paths (one per system), got {pairs!r}")
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"{who} takes the output folder as a path, got {type(out).__name__}")
    if not isinstance(options, RunOptions):
        raise TypeError(f"{who} takes a RunOptions, got {type(options).__name__}")
    return Path(out)


def _refuse_overwrite(out: Path, names: Sequence[str], force: bool) -> None:
    """Stop unless `out` holds none of `names` (or `force`)."""
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise EvalkitError.at(out / existing[0], None, "exists; pass --force to overwrite the results in "
                              f"{out} ({len(existing)} result file(s) there)")


def _write(out: Path, files: dict) -> None:
    """All result files or none; a failure is one line naming the file, exit status 1."""
    try:
        write_files_atomic(out, files)
    except OSError as e:
        replaced = getattr(e, "replaced", 0)
        kept = (f"the results in {out} were left as they were" if not replaced else
                f"{replaced} of {len(files)} result files in {out} were replaced before the failure")
        raise EvalkitError(f"{e.filename or out}: cannot write ({os_problem(e)}); {kept}", exit_code=1) from None


def _csv_text(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", "model", *METRICS], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def score_files(pairs: Sequence[str | os.PathLike], out: str | os.PathLike, config: ScoreConfig = ScoreConfig(),
                options: RunOptions = RunOptions()) -> dict:
    """Track A: score every kept item with the five metrics; write scores, exclusions, Table 1 and figures.

    Args:
        pairs: one JSONL pairs file per system, the baseline first.
        out: the output folder (created if needed).

    Returns:
        The Table 1 dict (what `table1.json` holds).

    Raises:
        EvalkitError: bad input (one line naming the file and line; exit status 2) or a failed write (1).
    """
    out = _check_call("score_files", pairs, out, options)
    if not isinstance(config, ScoreConfig):
        raise TypeError(f"score_files takes a ScoreConfig, got {type(config).__name__}")
    options.check(out)
    draw = options.figures and matplotlib_available()
    _refuse_overwrite(out, list(SCORE_FILES) + (figure_names() if draw else []), options.force)
    systems = [read_pairs(p) for p in pairs]
    selection = select_items(systems, keep_truncated=options.keep_truncated, strict_ids=options.strict_ids)
    rows = score_systems(systems, selection, config, progress=options.progress)
    table = build_tables(rows, systems, selection, config, options.seed, options.bootstrap, options.permutations)
    if draw:
        table["figures"] = figure_names()
    else:
        table["figure_note"] = FIGURE_SKIPPED if options.figures else "figures not requested (--no-figures)"
    files = {"scores.csv": _csv_text(rows), "scores.jsonl": "".join(json.dumps(r) + "\n" for r in rows),
             "exclusions.json": json.dumps(selection.to_json(), indent=2) + "\n",
             "table1.json": json.dumps(table, indent=2) + "\n", "table1.md": render_markdown(table)}
    if draw:
        files.update(figure_writers(rows, [s.model for s in systems], seed=options.seed))
    _write(out, files)
    return table


def ground_files(pairs: Sequence[str | os.PathLike], db: str | os.PathLike, out: str | os.PathLike,
                 options: RunOptions = RunOptions()) -> dict:
    """Grounding: score every kept (id, model) against the disease database; write the rows, Table 3, exclusions.

    The pairs files are read exactly as `score_files` reads them (same checks and exclusions).

    Returns:
        The Table 3 dict (what `table3.json` holds).

    Raises:
        EvalkitError: bad pairs files or database (one line naming the file and line), no grounded item
            (no reference names a condition of `db`), or a failed write (exit status 1).
    """
    out = _check_call("ground_files", pairs, out, options)
    if not isinstance(db, (str, os.PathLike)):
        raise TypeError(f"ground_files takes the database as a path, got {type(db).__name__}")
    options.check(out)
    _refuse_overwrite(out, GROUND_FILES, options.force)
    systems = [read_pairs(p) for p in pairs]
    database = load_disease_db(db)
    selection = select_items(systems, keep_truncated=options.keep_truncated, strict_ids=options.strict_ids)
    scorer = GroundingScorer(database)
    rows, ungrounded = ground_systems(systems, selection, scorer, progress=options.progress)
    if len(ungrounded) == len(selection.ids):
        raise EvalkitError.at(db, None, f"no grounded item: none of the {len(selection.ids)} scored references "
                              "names a condition of this database (is it the one the data were generated from?)")
    names = database.names()
    described = {"path": str(db), "sha256": database.sha256, "conditions": len(names["condition"]),
                 "tests": len(names["test"]), "medications": len(names["medication"]),
                 "forms": len(scorer.matcher.owners), "n_dropped_forms": len(scorer.matcher.dropped),
                 "dropped_forms": scorer.matcher.dropped}
    table = build_table3(rows, systems, selection, ungrounded, described, options.seed, options.bootstrap,
                         options.permutations)
    exclusions = {**selection.to_json(), "n_grounded": table["n"], "n_ungrounded": len(ungrounded),
                  "ungrounded": ungrounded, "ungrounded_rule": "the reference names no condition of the database; "
                  "excluded from Table 3 for every system (rows kept in grounding.jsonl with null scores)",
                  "undefined": _undefined(rows, {u["id"] for u in ungrounded})}
    _write(out, {"grounding.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                 "table3.md": render_table3(table), "table3.json": json.dumps(table, indent=2) + "\n",
                 "exclusions.json": json.dumps(exclusions, indent=2) + "\n"})
    return table


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
