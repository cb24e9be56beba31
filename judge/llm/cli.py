"""`python -m judge run ...`: judge the pairs files blind, resumably, and write Table 2 (`commands.judge_files`)."""
from __future__ import annotations

import argparse
import math
import os
from typing import Sequence

from plumbing.command import ArgumentParser, run_cli
from plumbing.errors import CommandError

from judge.errors import JudgeError
from judge.llm.commands import JudgeOptions, judge_files
from judge.llm.config import DEFAULT_BASE_URL, DEFAULT_MODEL, JudgeConfig, key_from_env, url_problem
from judge.llm.pricing import parse_price


def add_run_options(run: argparse.ArgumentParser) -> None:
    """Every option of `run` but --pairs and --out (the pipeline's `judge.args` are these)."""
    run.add_argument("--model", default=None, help=f"judge model (default: $JUDGE_MODEL or {DEFAULT_MODEL})")
    run.add_argument("--base-url", default=None, help=f"default: $OPENAI_BASE_URL or {DEFAULT_BASE_URL}")
    run.add_argument("--api-version", default=None, help="Azure api-version (turns on Azure-style requests)")
    run.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    run.add_argument("--rpm", type=float, default=None, help="requests per minute at most (default: no limit)")
    run.add_argument("--repeats", type=int, default=1, metavar="K", help="judge each item K times")
    run.add_argument("--pairwise", action="store_true", help="also compare systems pairwise, both orders")
    run.add_argument("--seed", type=int, default=0, help="request seed and blind order (default 0)")
    run.add_argument("--limit", type=int, default=None, metavar="N", help="judge N ids drawn at random (seeded)")
    run.add_argument("--with-reference", action="store_true", help="show the physician's reference answer")
    run.add_argument("--max-tokens", type=int, default=400, help="cap on the judge's answer (default 400)")
    run.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one answer")
    run.add_argument("--max-retries", type=int, default=6, help="retries per request (default 6)")
    run.add_argument("--response-format", default="auto", choices=["auto", "json_schema", "json_object", "none"])
    run.add_argument("--price", default=None, metavar="IN,OUT", help="USD per million prompt,completion tokens")
    run.add_argument("--dry-run", action="store_true", help="print one exact prompt and the request count")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The `python -m judge` argument parser (one command, `run`)."""
    parser = ArgumentParser(prog="python -m judge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    run = sub.add_parser("run", help="judge responses and write journal.jsonl, judgments.jsonl, table2.md/json")
    run.add_argument("--pairs", action="append", required=True, metavar="FILE",
                     help="JSONL records {id, model, prompt, reference, response}; repeat for each system")
    run.add_argument("--out", required=True, metavar="DIR", help="output folder (the journal lives here)")
    add_run_options(run)
    return parser


def judge_config(args) -> JudgeConfig:
    """Flags (then environment, then defaults) -> a checked JudgeConfig; bad values raise JudgeError."""
    for name in ("concurrency", "max_tokens"):
        if getattr(args, name) < 1:
            raise JudgeError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(args, name)}")
    if args.max_retries < 0:
        raise JudgeError(f"--max-retries: must be >= 0, got {args.max_retries}")
    for flag, value in (("--timeout", args.timeout), ("--rpm", args.rpm)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise JudgeError(f"{flag}: must be a positive number, got {value}")
    if args.seed < 0:
        raise JudgeError(f"--seed: must be >= 0, got {args.seed}")
    source = "--base-url" if args.base_url else "OPENAI_BASE_URL" if os.environ.get("OPENAI_BASE_URL") else None
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    problem = url_problem(base_url)
    if problem:
        raise JudgeError(f"{source or 'base URL'}: {base_url!r} {problem}")
    return JudgeConfig(
        base_url=base_url,
        model=args.model or os.environ.get("JUDGE_MODEL") or DEFAULT_MODEL, api_key=key_from_env(),
        api_version=args.api_version, seed=args.seed, max_tokens=args.max_tokens, timeout=args.timeout,
        concurrency=args.concurrency, rpm=args.rpm, max_retries=args.max_retries,
        response_format=args.response_format)


def judge_options(args) -> JudgeOptions:
    """The flags of what is judged and how it is reported, checked."""
    options = JudgeOptions(repeats=args.repeats, pairwise=args.pairwise, limit=args.limit,
                           with_reference=args.with_reference, price=parse_price(args.price) if args.price else None,
                           progress=not args.no_progress, dry_run=args.dry_run)
    options.check()
    return options


def parse_judge_flags(flags: Sequence[str], base_url: str | None = None,
                      model: str | None = None) -> tuple[JudgeConfig, JudgeOptions]:
    """`run`'s flags without --pairs / --out (a pipeline config's `judge.args`), with its endpoint and model."""
    p = ArgumentParser(prog="judge.args", raises=JudgeError)  # one error line, exit status 2
    add_run_options(p)
    args = p.parse_args(list(flags))
    args.base_url = base_url or args.base_url
    args.model = model or args.model
    return judge_config(args), judge_options(args)


def _interrupted_line(state: dict) -> str:
    """The one line printed on SIGINT / SIGTERM: how much is kept and how to resume."""
    journal, jobs = state.get("journal"), state.get("jobs")
    if journal is None or jobs is None:
        return "interrupted; nothing was written"
    kept = sum(job.key in journal for job in jobs)
    return f"interrupted; rerun to resume ({kept}/{len(jobs)} judgments kept in {journal.path})"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (docs/cli.md): 0 ok, 1 failure while running (the server
    refused the run, a full disk, every judgment failed), 2 bad input or usage (also a journal another
    run holds), 130 on SIGINT, 143 on SIGTERM."""
    args = build_parser().parse_args(argv)
    state: dict = {}

    def body() -> None:
        judge_files(args.pairs, args.out, judge_config(args), judge_options(args), state)

    return run_cli(body, handled=(CommandError, OSError), interrupted=lambda _signal: _interrupted_line(state))
