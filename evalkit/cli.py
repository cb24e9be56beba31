"""Command line: ``python -m evalkit score --pairs FILE [--pairs FILE ...] --out DIR`` (and ``ground``).

Reads one JSONL pairs file per system (the first is the baseline), excludes empty, truncated,
missing and too long responses explicitly (``evalkit/records.py``), scores every kept item with BLEU, ROUGE-1/2/L and METEOR and writes to
DIR: ``scores.csv`` and ``scores.jsonl`` (one row per (id, model)), ``exclusions.json``,
``table1.md``, ``table1.json`` and ``dist_<metric>.png``. Everything is computed before anything is
written; files are written to temporary names and renamed, and existing results are only replaced
with ``--force``; a failed write (a full disk) removes every temporary file it made. Bad input
prints ``error: <file>:<line>: <problem>`` (or ``error: --flag: <problem>``) and exits with status 2;
a failure while writing exits with 1 (exit codes: docs/cli.md).
``python -m evalkit ground ... --db CSV --out DIR`` (``evalkit/ground_command.py``) follows the same rules.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Sequence

from evalkit.errors import EvalkitError
from evalkit.ground_command import GROUND_FILES, add_ground_arguments, ground_outputs
from evalkit.plots import FIGURE_SKIPPED, figure_names, matplotlib_available, plot_distributions
from evalkit.records import read_pairs, select_items
from evalkit.score import METRICS, ScoreConfig, score_systems
from evalkit.smoothing import NLTK_METHODS, SACREBLEU_METHODS
from evalkit.table import build_tables, render_markdown
from minillama.jobcontrol import folder_problem, os_problem, run_cli

RESULT_FILES = ("scores.csv", "scores.jsonl", "exclusions.json", "table1.md", "table1.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evalkit",
                                     description="Track A lexical metrics (Table 1) and clinical grounding (Table 3).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="score pairs files and write per-item scores, Table 1 and figures")
    p.add_argument("--pairs", action="append", required=True, metavar="FILE",
                   help="JSONL of {id, model, prompt, reference, response}; once per system, baseline first")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    p.add_argument("--bleu-preset", choices=("sacrebleu", "nltk"), default="sacrebleu",
                   help="sacrebleu: sentence_bleu (13a, exp smoothing); nltk: sentence_bleu defaults (default: %(default)s)")
    p.add_argument("--bleu-smooth", default=None, choices=SACREBLEU_METHODS + NLTK_METHODS,
                   help="override the preset's BLEU smoothing (sacrebleu's or NLTK's methods; default: the preset's)")
    p.add_argument("--rouge-beta", type=float, default=1.0, help="ROUGE F-measure beta (1.0 = F1; default: %(default)s)")
    p.add_argument("--stem", action="store_true", help="Porter-stem tokens for ROUGE")
    p.add_argument("--no-meteor-penalty", action="store_true", help="METEOR without fragmentation penalty")
    p.add_argument("--keep-truncated", action="store_true",
                   help="score responses with finish_reason 'length' instead of excluding them")
    p.add_argument("--strict-ids", action="store_true",
                   help="an id missing from a file is an error instead of an exclusion")
    p.add_argument("--seed", type=int, default=0, help="seed of bootstrap, randomisation and plot jitter (default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=10_000, metavar="N", help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--permutations", type=int, default=10_000, metavar="N", help="randomisation sign flips (default: %(default)s)")
    p.add_argument("--no-figures", action="store_true", help="do not draw the distribution figures")
    p.add_argument("--force", action="store_true", help="overwrite existing result files in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_ground_arguments(sub.add_parser("ground", help="score answers against the disease database they were "
                                        "generated from; per-item grounding and Table 3"))
    return parser


def _check_args(args: argparse.Namespace) -> None:
    """Every option checked before anything is read, computed or written."""
    for flag, value in (("--bootstrap", args.bootstrap), ("--permutations", args.permutations)):
        if value < 1:
            raise EvalkitError(f"{flag}: must be >= 1, got {value}")
    beta = getattr(args, "rouge_beta", 1.0)  # `score` only
    if not math.isfinite(beta) or beta <= 0:
        raise EvalkitError(f"--rouge-beta: must be a finite number > 0, got {beta}")
    if args.seed < 0:
        raise EvalkitError(f"--seed: must be >= 0, got {args.seed}")
    problem = folder_problem(args.out)
    if problem:
        raise EvalkitError(f"--out {args.out}: {problem}")


def _refuse_overwrite(out: Path, names: Sequence[str], force: bool) -> None:
    """Stop unless ``out`` holds none of ``names`` (or ``force``)."""
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise EvalkitError.at(out / existing[0], None, "exists; pass --force to overwrite the results in "
                              f"{out} ({len(existing)} result file(s) there)")


def _csv_text(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["id", "model", *METRICS], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` and force it to disk (a full disk fails here, not after the rename)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _make_folder(out: Path) -> list[Path]:
    """Create ``out`` and its missing parents; returns the folders created, deepest first."""
    created = []
    folder = out
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    out.mkdir(parents=True, exist_ok=True)
    return created


def _write_results(out: Path, files: dict[str, str], draw) -> None:
    """Write every result to a hidden temporary sibling, then rename them all over the final names.

    ``draw(tag)`` draws the figures to temporary names ending in ``tag``; it returns {temporary: final}.
    On any failure (a full disk,
    a read-only folder) every temporary file and every folder this call created is removed, so the
    results already in ``out`` are left exactly as they were, and one line names the path.

    Raises:
        EvalkitError: exit status 1, ``"<path>: cannot write (<reason>); ..."``.
    """
    tag = f".tmp{os.getpid()}"
    temps = {out / f".{name}{tag}": out / name for name in files}
    created: list[Path] = []
    renamed = 0
    try:
        created = _make_folder(out)
        for (tmp, path), text in zip(temps.items(), files.values()):
            try:
                _write_text(tmp, text)
            except OSError as e:
                e.filename = e.filename if e.filename and not str(e.filename).startswith(str(tmp)) else str(path)
                raise
        figures = draw(tag)
        temps.update(figures)
        for tmp, path in temps.items():
            os.replace(tmp, path)
            renamed += 1
    except OSError as e:
        where = e.filename or out
        kept = (f"the results in {out} were left as they were" if not renamed else
                f"{renamed} of {len(temps)} result files in {out} were replaced before the failure")
        raise EvalkitError(f"{where}: cannot write ({os_problem(e)}); {kept}", exit_code=1) from None
    finally:
        for tmp in list(temps) + [out / f".{name}{tag}" for name in figure_names()]:
            if tmp.exists():
                tmp.unlink()
        if not renamed:
            for folder in created:  # deepest first; only empty folders this call made
                try:
                    folder.rmdir()
                except OSError:
                    break


def run_score(args: argparse.Namespace) -> dict:
    """Do the ``score`` command; returns the table dict."""
    _check_args(args)
    out = Path(args.out)
    draw_figures = not args.no_figures and matplotlib_available()
    _refuse_overwrite(out, list(RESULT_FILES) + (figure_names() if draw_figures else []), args.force)
    config = ScoreConfig(args.bleu_preset, args.bleu_smooth, args.rouge_beta, args.stem, not args.no_meteor_penalty)
    systems = [read_pairs(p) for p in args.pairs]
    selection = select_items(systems, keep_truncated=args.keep_truncated, strict_ids=args.strict_ids)
    rows = score_systems(systems, selection, config, progress=not args.quiet)
    table = build_tables(rows, systems, selection, config, args.seed, args.bootstrap, args.permutations)

    def draw(tag: str) -> dict[Path, Path]:
        if not draw_figures:
            return {}
        temps = {m: out / f".{n}{tag}" for m, n in zip(METRICS, figure_names())}
        plot_distributions(rows, [s.model for s in systems], temps, seed=args.seed)
        return {temps[m]: out / n for m, n in zip(METRICS, figure_names())}

    if draw_figures:
        table["figures"] = figure_names()
    else:
        table["figure_note"] = "figures not requested (--no-figures)" if args.no_figures else FIGURE_SKIPPED
    files = {
        "scores.csv": _csv_text(rows),
        "scores.jsonl": "".join(json.dumps(r) + "\n" for r in rows),
        "exclusions.json": json.dumps(selection.to_json(), indent=2) + "\n",
        "table1.json": json.dumps(table, indent=2) + "\n",
        "table1.md": render_markdown(table),
    }
    _write_results(out, files, draw)
    return table


def run_ground(args: argparse.Namespace) -> dict:
    """Do the ``ground`` command; returns the Table 3 dict."""
    _check_args(args)
    out = Path(args.out)
    _refuse_overwrite(out, GROUND_FILES, args.force)
    files, table = ground_outputs(args)
    _write_results(out, files, lambda tag: {})
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (docs/cli.md): 0 ok, 1 failure while writing, 2 bad input or
    usage, 130 on SIGINT, 143 on SIGTERM (nothing is written before scoring ends; temporary files go)."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        if args.command == "score":
            table = run_score(args)
            if not args.quiet:
                print(f"N = {table['n']} items per system, {table['exclusions']['n_excluded']} ids excluded; "
                      f"wrote {args.out}/table1.md", file=sys.stderr)
        elif args.command == "ground":
            table = run_ground(args)
            if not args.quiet:
                print(f"N = {table['n']} grounded items per system ({table['exclusions']['n_ungrounded']} ungrounded, "
                      f"{table['exclusions']['n_excluded']} excluded); wrote {args.out}/table3.md", file=sys.stderr)
        return 0

    return run_cli(body, handled=(EvalkitError, OSError),
                   interrupted="interrupted; no result file was written or changed (rerun the same command)")
