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
import math
import sys
from typing import Sequence

from plumbing.command import ArgumentParser, run_cli

from evalkit.commands import RunOptions, ground_files, score_files
from evalkit.errors import EvalkitError
from evalkit.score import ScoreConfig
from evalkit.smoothing import NLTK_METHODS, SACREBLEU_METHODS


def add_shared_options(p: argparse.ArgumentParser) -> None:
    """The options `score` and `ground` share (exclusions, resampling, --force, --quiet)."""
    p.add_argument("--keep-truncated", action="store_true",
                   help="score responses with finish_reason 'length' instead of excluding them")
    p.add_argument("--strict-ids", action="store_true",
                   help="an id missing from a file is an error instead of an exclusion")
    p.add_argument("--seed", type=int, default=0, help="seed of bootstrap, randomisation and plot jitter (default: %(default)s)")
    p.add_argument("--bootstrap", type=int, default=10_000, metavar="N", help="bootstrap resamples (default: %(default)s)")
    p.add_argument("--permutations", type=int, default=10_000, metavar="N", help="randomisation sign flips (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite existing result files in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def add_metric_options(p: argparse.ArgumentParser) -> None:
    """The options that change how `score` computes the metrics."""
    p.add_argument("--bleu-preset", choices=("sacrebleu", "nltk"), default="sacrebleu",
                   help="sacrebleu: sentence_bleu (13a, exp smoothing); nltk: sentence_bleu defaults (default: %(default)s)")
    p.add_argument("--bleu-smooth", default=None, choices=SACREBLEU_METHODS + NLTK_METHODS,
                   help="override the preset's BLEU smoothing (sacrebleu's or NLTK's methods; default: the preset's)")
    p.add_argument("--rouge-beta", type=float, default=1.0, help="ROUGE F-measure beta (1.0 = F1; default: %(default)s)")
    p.add_argument("--stem", action="store_true", help="Porter-stem tokens for ROUGE")
    p.add_argument("--no-meteor-penalty", action="store_true", help="METEOR without fragmentation penalty")
    p.add_argument("--no-figures", action="store_true", help="do not draw the distribution figures")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m evalkit",
                            description="Track A lexical metrics (Table 1) and clinical grounding (Table 3).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    p = sub.add_parser("score", help="score pairs files and write per-item scores, Table 1 and figures")
    p.add_argument("--pairs", action="append", required=True, metavar="FILE",
                   help="JSONL of {id, model, prompt, reference, response}; once per system, baseline first")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    add_metric_options(p)
    add_shared_options(p)
    g = sub.add_parser("ground", help="score answers against the disease database they were generated from; "
                                      "per-item grounding and Table 3")
    g.add_argument("--pairs", action="append", required=True, metavar="FILE",
                   help="JSONL of {id, model, prompt, reference, response}; once per system, baseline first")
    g.add_argument("--db", required=True, metavar="CSV",
                   help="disease database (columns idx, disease, Symptom, reason, TestsAndProcedures, "
                        "commonMedications), e.g. ChatDoctor's format_dataset.csv")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    add_shared_options(g)
    return parser


def score_config(args: argparse.Namespace) -> ScoreConfig:
    """The metric settings of `score`'s flags (checked first: one line naming the flag)."""
    if not math.isfinite(args.rouge_beta) or args.rouge_beta <= 0:
        raise EvalkitError(f"--rouge-beta: must be a finite number > 0, got {args.rouge_beta}")
    return ScoreConfig(args.bleu_preset, args.bleu_smooth, args.rouge_beta, args.stem, not args.no_meteor_penalty)


def run_options(args: argparse.Namespace) -> RunOptions:
    """The shared options of `score` or `ground` as `RunOptions`."""
    return RunOptions(keep_truncated=args.keep_truncated, strict_ids=args.strict_ids, seed=args.seed,
                      bootstrap=args.bootstrap, permutations=args.permutations,
                      figures=not getattr(args, "no_figures", False), force=args.force, progress=not args.quiet)


def parse_score_flags(flags: Sequence[str]) -> tuple[ScoreConfig, RunOptions]:
    """`score`'s metric and shared flags (without --pairs / --out), e.g. a pipeline config's `evalkit_args`."""
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
            if not args.quiet:
                print(f"N = {table['n']} items per system, {table['exclusions']['n_excluded']} ids excluded; "
                      f"wrote {args.out}/table1.md", file=sys.stderr)
        elif args.command == "ground":
            table = ground_files(args.pairs, args.db, args.out, run_options(args))
            if not args.quiet:
                print(f"N = {table['n']} grounded items per system ({table['exclusions']['n_ungrounded']} ungrounded, "
                      f"{table['exclusions']['n_excluded']} excluded); wrote {args.out}/table3.md", file=sys.stderr)
        return 0

    return run_cli(body, handled=(EvalkitError, OSError),
                   interrupted="interrupted; no result file was written or changed (rerun the same command)")
