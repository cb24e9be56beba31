"""Command line: ``python -m evalkit score --pairs FILE [--pairs FILE ...] --out DIR`` (and ``ground``).

Reads one JSONL pairs file per system (the first is the baseline), excludes empty, truncated and
missing responses explicitly, scores every kept item with BLEU, ROUGE-1/2/L and METEOR and writes to
DIR: ``scores.csv`` and ``scores.jsonl`` (one row per (id, model)), ``exclusions.json``,
``table1.md``, ``table1.json`` and ``dist_<metric>.png``. Everything is computed before anything is
written; files are written to temporary names and renamed, and existing results are only replaced
with ``--force``. Bad input prints ``error: <file>:<line>: <problem>`` and exits with status 2.
``python -m evalkit ground ... --db CSV --out DIR`` (``evalkit/ground_command.py``) follows the same rules.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
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
                   help="sacrebleu: sentence_bleu (13a, exp smoothing); nltk: sentence_bleu defaults")
    p.add_argument("--bleu-smooth", default=None, choices=SACREBLEU_METHODS + NLTK_METHODS,
                   help="override the preset's BLEU smoothing (sacrebleu's or NLTK's methods)")
    p.add_argument("--rouge-beta", type=float, default=1.0, help="ROUGE F-measure beta (1.0 = F1)")
    p.add_argument("--stem", action="store_true", help="Porter-stem tokens for ROUGE")
    p.add_argument("--no-meteor-penalty", action="store_true", help="METEOR without fragmentation penalty")
    p.add_argument("--keep-truncated", action="store_true",
                   help="score responses with finish_reason 'length' instead of excluding them")
    p.add_argument("--strict-ids", action="store_true",
                   help="an id missing from a file is an error instead of an exclusion")
    p.add_argument("--seed", type=int, default=0, help="seed of bootstrap, randomisation and plot jitter")
    p.add_argument("--bootstrap", type=int, default=10_000, metavar="N", help="bootstrap resamples")
    p.add_argument("--permutations", type=int, default=10_000, metavar="N", help="randomisation sign flips")
    p.add_argument("--no-figures", action="store_true", help="do not draw the distribution figures")
    p.add_argument("--force", action="store_true", help="overwrite existing result files in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    add_ground_arguments(sub.add_parser("ground", help="score answers against the disease database they were "
                                        "generated from; per-item grounding and Table 3"))
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if args.bootstrap < 1 or args.permutations < 1:
        raise EvalkitError("--bootstrap and --permutations must be >= 1")
    if args.rouge_beta <= 0:
        raise EvalkitError(f"--rouge-beta must be > 0, got {args.rouge_beta}")


def _refuse_overwrite(out: Path, names: Sequence[str], force: bool) -> None:
    """Stop unless ``out`` can be a folder and holds none of ``names`` (or ``force``)."""
    if out.exists() and not out.is_dir():
        raise EvalkitError.at(out, None, "exists and is not a folder")
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


def _write_atomic(files: dict[Path, str], figures_from: dict[Path, Path]) -> None:
    """Write each text to a temporary sibling, then rename all (figures are already drawn to temps)."""
    temps = {}
    try:
        for path, text in files.items():
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            tmp.write_text(text, encoding="utf-8")
            temps[tmp] = path
        temps.update(figures_from)
        for tmp, path in temps.items():
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()


def run_score(args: argparse.Namespace) -> dict:
    """Do the ``score`` command; returns the table dict."""
    _check_args(args)
    out = Path(args.out)
    draw = not args.no_figures and matplotlib_available()
    _refuse_overwrite(out, list(RESULT_FILES) + (figure_names() if draw else []), args.force)
    config = ScoreConfig(args.bleu_preset, args.bleu_smooth, args.rouge_beta, args.stem, not args.no_meteor_penalty)
    systems = [read_pairs(p) for p in args.pairs]
    selection = select_items(systems, keep_truncated=args.keep_truncated, strict_ids=args.strict_ids)
    rows = score_systems(systems, selection, config, progress=not args.quiet)
    table = build_tables(rows, systems, selection, config, args.seed, args.bootstrap, args.permutations)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict[Path, Path] = {}
    if draw:
        temps = {m: out / f".{n}.tmp{os.getpid()}" for m, n in zip(METRICS, figure_names())}
        plot_distributions(rows, [s.model for s in systems], temps, seed=args.seed)
        figures = {temps[m]: out / n for m, n in zip(METRICS, figure_names())}
        table["figures"] = figure_names()
    else:
        table["figure_note"] = "figures not requested (--no-figures)" if args.no_figures else FIGURE_SKIPPED
    files = {
        out / "scores.csv": _csv_text(rows),
        out / "scores.jsonl": "".join(json.dumps(r) + "\n" for r in rows),
        out / "exclusions.json": json.dumps(selection.to_json(), indent=2) + "\n",
        out / "table1.json": json.dumps(table, indent=2) + "\n",
        out / "table1.md": render_markdown(table),
    }
    _write_atomic(files, figures)
    return table


def run_ground(args: argparse.Namespace) -> dict:
    """Do the ``ground`` command; returns the Table 3 dict."""
    out = Path(args.out)
    _refuse_overwrite(out, GROUND_FILES, args.force)
    files, table = ground_outputs(args)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic({out / name: text for name, text in files.items()}, {})
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
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
    except EvalkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
