"""`python -m judge run ...`: judge the pairs files blind, resumably, and write Table 2."""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
from pathlib import Path

from judge.client import FORMAT_MODES, JudgeClient, request_body
from judge.config import DEFAULT_BASE_URL, DEFAULT_MODEL, JudgeConfig, is_loopback, key_from_env, url_problem
from judge.errors import FatalJudgeError, JudgeError
from judge.journal import Journal
from judge.pairs import models_in_order, read_pairs, sample_ids
from judge.pricing import estimate_cost, parse_price
from judge.rubric import DIMENSIONS, PAIRWISE_SCHEMA, POINTWISE_SCHEMA
from judge.runner import build_jobs, run_jobs
from judge.standin_answers import SERVED_MODEL as STANDIN_MODEL
from judge.table import render_markdown, table2
from minillama.durable import write_text_atomic
from minillama.jobcontrol import Interrupted, folder_problem, os_problem, run_cli, sigterm_cancels


def build_parser() -> argparse.ArgumentParser:
    """The `python -m judge` argument parser (one command, `run`)."""
    parser = argparse.ArgumentParser(prog="python -m judge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="judge responses and write journal.jsonl, judgments.jsonl, table2.md/json")
    run.add_argument("--pairs", action="append", required=True, metavar="FILE",
                     help="JSONL records {id, model, prompt, reference, response}; repeat for each system")
    run.add_argument("--out", required=True, metavar="DIR", help="output folder (the journal lives here)")
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
    return parser


def _config(args) -> JudgeConfig:
    """Flags (then environment, then defaults) -> a checked JudgeConfig; bad values raise JudgeError."""
    for name in ("concurrency", "repeats", "max_tokens"):
        if getattr(args, name) < 1:
            raise JudgeError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(args, name)}")
    if args.limit is not None and args.limit < 1:
        raise JudgeError(f"--limit: must be at least 1, got {args.limit}")
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


def _note_limit(limit: int | None, items) -> None:
    """Say in one line when --limit asks for more ids than the pairs files hold (all are judged)."""
    n_ids = len({item.id for item in items})
    if limit is not None and limit > n_ids:
        print(f"note: --limit {limit} exceeds the {n_ids} ids in the pairs files; judging all {n_ids}",
              file=sys.stderr)


def _usage_cost(model: str, usage: dict, price, served: list[str]) -> dict:
    """Token totals and estimated cost; not applicable when the stand-in heuristic answered."""
    usage = estimate_cost(model, usage, price)
    if STANDIN_MODEL in served:
        usage.update(estimated_cost_usd=None, cost_note=f"not applicable (answered by the stand-in "
                     f"{STANDIN_MODEL}, not a priced judge model)")
    return usage


def _write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing (`minillama.durable.write_text_atomic`).

    Raises:
        JudgeError: exit status 1 (a full disk ...); the temporary file is removed, the target untouched.
    """
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise JudgeError(f"{path}: cannot write ({os_problem(exc)}); the journal is intact, rerun the same "
                         "command to write the tables again", exit_code=1) from None


def _dry_run(jobs, journal: Journal, config: JudgeConfig) -> None:
    """Print the exact messages of the next job and how many requests the run would send."""
    todo = [job for job in jobs if job.key not in journal]
    job = todo[0] if todo else jobs[0]
    print(f"# dry run: no request is sent. Endpoint {config.endpoint}, judge model {config.model}")
    print(f"# one {job.kind} prompt (item {job.id!r}, repeat {job.repeat}); the judge sees exactly this:")
    for message in job.messages:
        print(f"--- {message['role']} ---\n{message['content']}")
    print("--- rest of the request body (first structured-output mode tried) ---")
    mode = FORMAT_MODES[0] if config.response_format == "auto" else config.response_format
    schema, name = (PAIRWISE_SCHEMA, "verdict") if job.kind == "pairwise" else (POINTWISE_SCHEMA, "judgment")
    body = {k: v for k, v in request_body(config, job.messages, schema, name, mode).items() if k != "messages"}
    print(json.dumps(body))
    print(f"requests: {len(todo)} to send ({len(jobs)} judgments in total, {len(jobs) - len(todo)} already "
          f"in {journal.path}); each unreadable reply adds one repair request, retries may add more")


def _rows(jobs, journal: Journal, kind: str, order: dict) -> list[dict]:
    """Output rows of this run's `kind` jobs from their newest journal records, in input order."""
    rows = []
    for job in jobs:
        record = journal.get(job.key)
        if job.kind != kind or record is None:
            continue
        row = {"id": job.id, "repeat": job.repeat, "status": record["status"]}
        if kind == "pointwise":
            row["model"] = job.models[0]
            row.update({d: (record.get("scores") or {}).get(d) for d in DIMENSIONS})
        else:
            row.update(models=list(job.models), winner=record.get("winner"), winner_model=record.get("winner_model"))
        row.update(justification=record.get("justification"), method=record.get("method"),
                   repaired=record.get("repaired", False), truncated=record.get("truncated", False),
                   finish_reason=record.get("finish_reason"), response_format=record.get("response_format"),
                   judge_model=record["judge_model"], served_model=record.get("served_model"), key=job.key)
        if record["status"] != "ok":
            row.update(problem=record.get("problem"), raw=record.get("raw"))
        rows.append(row)
    return sorted(rows, key=lambda r: (order[r["id"]], str(r.get("model", r.get("models"))), r["repeat"]))


async def _judge(jobs, config, journal, show_progress: bool) -> dict:
    """Judge the jobs with a progress bar (requests done / all judgments of the run).

    SIGTERM cancels the run like Ctrl-C does (asyncio's own SIGINT handling): the requests in flight
    are abandoned, the journal writes already started are finished, then `Interrupted(SIGTERM)` is raised.
    """
    from tqdm import tqdm

    done = sum(job.key in journal for job in jobs)
    with sigterm_cancels(asyncio.current_task()) as received:
        try:
            with tqdm(total=len(jobs), initial=done, desc="judge", unit="req", disable=not show_progress) as bar:
                async with JudgeClient(config) as client:
                    return await run_jobs(jobs, client, journal, progress=bar)
        except asyncio.CancelledError:
            if received:
                raise Interrupted(signal.SIGTERM) from None
            raise


def run(args, state: dict | None = None) -> int:
    """The `run` command: validate, then dry-run or judge, then write the tables. Returns the exit status.

    `state` receives "journal" and "jobs" once known (the CLI's interruption line counts from them).
    """
    state = {} if state is None else state
    config = _config(args)
    out = Path(args.out)
    problem = folder_problem(out)
    if problem:
        raise JudgeError(f"--out {out}: {problem}")
    price = parse_price(args.price) if args.price else None
    items = read_pairs(args.pairs)
    models = models_in_order(items)
    if args.pairwise and len(models) < 2:
        raise JudgeError(f"--pairwise: needs at least two systems, the pairs files hold one ({models[0]!r}); "
                         "pass one --pairs file per system")
    _note_limit(args.limit, items)
    items = sample_ids(items, args.limit, args.seed)
    jobs = build_jobs(items, config, args.repeats, args.pairwise, args.with_reference)
    journal = Journal(out / "journal.jsonl")
    state.update(journal=journal, jobs=jobs)
    if args.dry_run:
        _warn_torn(journal)
        _dry_run(jobs, journal, config)
        return 0
    if config.api_key is None and not is_loopback(config.endpoint):
        raise JudgeError(f"OPENAI_API_KEY is not set; {config.endpoint} needs a key (see docs/judge.md)")
    with journal:  # locked and read again: only now is the count of torn lines final
        _warn_torn(journal)
        try:
            session = asyncio.run(_judge(jobs, config, journal, not args.no_progress))
        except FatalJudgeError as exc:
            kept = sum(job.key in journal for job in jobs)
            raise FatalJudgeError(f"{exc} (stopped; {kept}/{len(jobs)} judgments kept in {journal.path}, "
                                  "rerun the same command to resume)") from None
        _write_outputs(args, config, jobs, journal, items, models, price, session)
        return 0


def _warn_torn(journal: Journal) -> None:
    if journal.torn:
        print(f"warning: {journal.path}: skipped {journal.torn} unreadable line(s) (a crash cut a write); "
              "those judgments are requested again", file=sys.stderr)


def _write_outputs(args, config: JudgeConfig, jobs, journal: Journal, items, models, price, session: dict) -> None:
    """judgments.jsonl (pairwise.jsonl), table2.json and table2.md from the journal, then the summary lines.

    Raises:
        JudgeError: exit status 1 when every judgment of the run failed (the tables are written first).
    """
    out = Path(args.out)
    order = {i: n for n, i in enumerate(dict.fromkeys(item.id for item in items))}
    rows, pair_rows = _rows(jobs, journal, "pointwise", order), _rows(jobs, journal, "pairwise", order)
    records = [journal.get(job.key) for job in jobs]
    usage = {k: sum(r["usage"][k] for r in records) for k in ("prompt_tokens", "completion_tokens")}
    served = sorted({r["served_model"] for r in records if r.get("served_model")})
    usage = {**_usage_cost(config.model, usage, price, served), "requests": sum(r["attempts"] for r in records)}
    table = table2(rows, models, args.repeats, pair_rows if args.pairwise else None, config.model, usage, served)
    _write_atomic(out / "judgments.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    if args.pairwise:
        _write_atomic(out / "pairwise.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in pair_rows))
    _write_atomic(out / "table2.json", json.dumps(table, indent=2) + "\n")
    markdown = render_markdown(table)
    _write_atomic(out / "table2.md", markdown)
    print(markdown)
    print(f"judged {session['requested']} new, {session['skipped']} from the journal; wrote {out}/table2.md")
    failed = sum(r["status"] == "error" for r in records)
    unreadable = sum(r["status"] == "parse_failure" for r in records)
    if failed + unreadable == len(records):
        raise JudgeError(f"every one of the {len(records)} judgments failed ({unreadable} unreadable replies, "
                         f"{failed} request errors); the replies and problems are in {out}/judgments.jsonl",
                         exit_code=1)
    if failed:
        print(f"warning: {failed} judgment(s) ended in request errors; rerun the same command to retry them",
              file=sys.stderr)


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
    return run_cli(lambda: run(args, state), handled=(JudgeError, OSError),
                   interrupted=lambda: _interrupted_line(state))
