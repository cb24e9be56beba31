"""Command line: ``python -m evalkit score --pairs FILE [--pairs FILE ...] --out DIR`` (and ``ground``).

Reads one JSONL pairs file per system (the first is the baseline), excludes empty, truncated, missing and
too long responses explicitly (``evalkit/records.py``), scores every kept item with BLEU, ROUGE-1/2/L and
METEOR and writes to DIR: ``scores.csv`` and ``scores.jsonl`` (one row per (id, model)), ``exclusions.json``,
``table1.md``, ``table1.json`` and ``dist_<metric>.png``. ``ground ... --db CSV`` writes ``grounding.jsonl``,
``table3.md``, ``table3.json`` and ``exclusions.json``. The work is `evalkit.commands.score_files` and
`ground_files`; this module turns the flags into their arguments. Bad input prints
``error: <file>:<line>: <problem>`` (or ``error: --flag: <problem>``) and exits with status 2; a failure
while writing exits with 1 (exit codes: docs/cli.md).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from plumbing.command import ArgumentParser, add_pairs_and_out, run_cli
from plumbing.flags import add_flags, check_fields, from_args

from evalkit.commands import RunOptions, ground_files, score_files
from evalkit.errors import EvalkitError
from evalkit.score import ScoreConfig


def add_shared_options(p: argparse.ArgumentParser) -> None:
    """The options `score` and `ground` share (exclusions, resampling, --force, --quiet): `RunOptions`' fields."""
    add_flags(p, RunOptions, skip=("figures",))


def add_metric_options(p: argparse.ArgumentParser) -> None:
    """The options that change how `score` computes the metrics: `ScoreConfig`'s fields, and --no-figures."""
    add_flags(p, ScoreConfig)
    add_flags(p, RunOptions, only=("figures",))


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m evalkit",
                            description="Track A lexical metrics (Table 1) and clinical grounding (Table 3).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    p = sub.add_parser("score", help="score pairs files and write per-item scores, Table 1 and figures")
    add_pairs_and_out(p, "output folder (created if needed)")
    add_metric_options(p)
    add_shared_options(p)
    g = sub.add_parser("ground", help="score answers against the disease database they were generated from; "
                                      "per-item grounding and Table 3")
    g.add_argument("--db", required=True, metavar="CSV",
                   help="disease database (columns idx, disease, Symptom, reason, TestsAndProcedures, "
                        "commonMedications), e.g. ChatDoctor's format_dataset.csv")
    add_pairs_and_out(g, "output folder (created if needed)")
    add_shared_options(g)
    return parser


def score_config(args: argparse.Namespace) -> ScoreConfig:
    """The metric settings of `score`'s flags (checked first: one line naming the flag)."""
    check_fields(args, EvalkitError, ScoreConfig)
    return from_args(ScoreConfig, args)


def run_options(args: argparse.Namespace) -> RunOptions:
    """The shared options of `score` or `ground` as `RunOptions`."""
    return from_args(RunOptions, args)


def parse_score_flags(flags: Sequence[str]) -> tuple[ScoreConfig, RunOptions]:
    """`score`'s metric and shared flags (without --pairs / --out), e.g. an old pipeline config's `evalkit_args`."""
    p = ArgumentParser(prog="evalkit_args", raises=EvalkitError)  # one error line, exit status 2
    add_metric_options(p)
    add_shared_options(p)
    args = p.parse_args(list(flags))
    return score_config(args), run_options(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (docs/cli.md): 0 ok, 1 failure while writing, 2 bad input or
    usage, 130 on SIGINT, 143 on SIGTERM (nothing is written before scoring ends; temporary files go)."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        if args.command == "score":
            table = score_files(args.pairs, args.out, score_config(args), run_options(args))
            if args.progress:
                print(f"N = {table['n']} items per system, {table['exclusions']['n_excluded']} ids excluded; "
                      f"wrote {args.out}/table1.md", file=sys.stderr)
        elif args.command == "ground":
            table = ground_files(args.pairs, args.db, args.out, run_options(args))
            if args.progress:
                print(f"N = {table['n']} grounded items per system ({table['exclusions']['n_ungrounded']} ungrounded, "
                      f"{table['exclusions']['n_excluded']} excluded); wrote {args.out}/table3.md", file=sys.stderr)
        return 0

    return run_cli(body, handled=(EvalkitError, OSError),
                   interrupted="interrupted; no result file was written or changed (rerun the same command)")
