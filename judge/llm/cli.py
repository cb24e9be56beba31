"""`python -m judge run ...`: judge the pairs files blind, resumably, and write Table 2 (`commands.judge_files`)."""
from __future__ import annotations

import argparse
import os
from typing import Sequence

from plumbing.command import ArgumentParser, add_pairs_and_out, run_cli
from plumbing.errors import CommandError
from plumbing.flags import add_flags, check_fields, from_args

from judge.errors import JudgeError
from judge.llm.commands import JudgeOptions, judge_files
from judge.llm.config import JudgeConfig, key_from_env, url_problem
from judge.llm.pricing import parse_price


def add_run_options(run: argparse.ArgumentParser) -> None:
    """Every option of `run` but --pairs and --out: the fields of `JudgeConfig` and `JudgeOptions`."""
    add_flags(run, JudgeConfig)
    add_flags(run, JudgeOptions)


def build_parser() -> argparse.ArgumentParser:
    """The `python -m judge` argument parser (one command, `run`)."""
    parser = ArgumentParser(prog="python -m judge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    run = sub.add_parser("run", help="judge responses and write journal.jsonl, judgments.jsonl, table2.md/json")
    add_pairs_and_out(run, "output folder (the journal lives here)")
    add_run_options(run)
    return parser


def judge_config(args) -> JudgeConfig:
    """Flags (then environment, then defaults) -> a checked JudgeConfig; bad values raise JudgeError."""
    config = from_args(JudgeConfig, args, api_key=key_from_env())
    problem = url_problem(config.base_url)
    if problem:
        source = "--base-url" if args.base_url else "OPENAI_BASE_URL" if os.environ.get("OPENAI_BASE_URL") else None
        raise JudgeError(f"{source or 'base URL'}: {config.base_url!r} {problem}")
    check_fields(config, JudgeError)
    return config


def judge_options(args) -> JudgeOptions:
    """The flags of what is judged and how it is reported, checked."""
    options = from_args(JudgeOptions, args, price=parse_price(args.price) if args.price else None)
    options.check()
    return options


def judge_flags(flags: Sequence[str]) -> argparse.Namespace:
    """`run`'s flags without --pairs / --out, parsed (an error is one JudgeError line)."""
    p = ArgumentParser(prog="judge.args", raises=JudgeError)  # one error line, exit status 2
    add_run_options(p)
    return p.parse_args(list(flags))


def parse_judge_flags(flags: Sequence[str], base_url: str | None = None,
                      model: str | None = None) -> tuple[JudgeConfig, JudgeOptions]:
    """`run`'s flags without --pairs / --out (an old pipeline config's `judge.args`), with its endpoint and model."""
    args = judge_flags(flags)
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
