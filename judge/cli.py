"""`python -m judge run ...`: judge the pairs files blind, resumably, and write Table 2."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from judge.client import FORMAT_MODES, JudgeClient, request_body
from judge.config import DEFAULT_BASE_URL, DEFAULT_MODEL, JudgeConfig, is_loopback, key_from_env
from judge.errors import FatalJudgeError, JudgeError
from judge.journal import Journal
from judge.pairs import models_in_order, read_pairs, sample_ids
from judge.pricing import estimate_cost, parse_price
from judge.rubric import DIMENSIONS, PAIRWISE_SCHEMA, POINTWISE_SCHEMA
from judge.runner import build_jobs, run_jobs
from judge.standin_answers import SERVED_MODEL as STANDIN_MODEL
from judge.table import render_markdown, table2


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
            raise JudgeError(f"--{name.replace('_', '-')} must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise JudgeError("--limit must be at least 1")
    if args.max_retries < 0 or args.timeout <= 0 or (args.rpm is not None and args.rpm <= 0):
        raise JudgeError("--max-retries must be >= 0, --timeout and --rpm positive")
    return JudgeConfig(
        base_url=args.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
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
    """Write a whole file or nothing: a temporary file renamed over the target."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise JudgeError(f"{path}: cannot write ({exc.strerror}); the journal is intact, rerun to retry") from None


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
                   repaired=record.get("repaired", False), judge_model=record["judge_model"],
                   served_model=record.get("served_model"), key=job.key)
        if record["status"] != "ok":
            row.update(problem=record.get("problem"), raw=record.get("raw"))
        rows.append(row)
    return sorted(rows, key=lambda r: (order[r["id"]], str(r.get("model", r.get("models"))), r["repeat"]))


async def _judge(jobs, config, journal, show_progress: bool) -> dict:
    """Judge the jobs with a progress bar (requests done / all judgments of the run)."""
    from tqdm import tqdm

    done = sum(job.key in journal for job in jobs)
    with tqdm(total=len(jobs), initial=done, desc="judge", unit="req", disable=not show_progress) as bar:
        async with JudgeClient(config) as client:
            return await run_jobs(jobs, client, journal, progress=bar)


def run(args) -> int:
    """The `run` command: validate, then dry-run or judge, then write the tables. Returns the exit status."""
    config = _config(args)
    items = read_pairs(args.pairs)
    _note_limit(args.limit, items)
    items = sample_ids(items, args.limit, args.seed)
    models = models_in_order(items)
    price = parse_price(args.price) if args.price else None
    jobs = build_jobs(items, config, args.repeats, args.pairwise, args.with_reference)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise JudgeError(f"{out}: exists and is not a folder")
    journal = Journal(out / "journal.jsonl")
    if journal.torn:
        print(f"warning: {journal.path}: skipped {journal.torn} unreadable line(s) (a crash cut a write); "
              "those judgments are requested again", file=sys.stderr)
    if args.dry_run:
        _dry_run(jobs, journal, config)
        return 0
    if config.api_key is None and not is_loopback(config.endpoint):
        raise JudgeError(f"OPENAI_API_KEY is not set; {config.endpoint} needs a key (see docs/judge.md)")
    with journal:
        try:
            session = asyncio.run(_judge(jobs, config, journal, not args.no_progress))
        except FatalJudgeError as exc:
            kept = sum(job.key in journal for job in jobs)
            raise FatalJudgeError(f"{exc} (stopped; {kept}/{len(jobs)} judgments kept in {journal.path}, "
                                  "rerun the same command to resume)") from None
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
    if failed:
        print(f"warning: {failed} judgment(s) ended in request errors; rerun the same command to retry them",
              file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except JudgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished judgments are in the journal; rerun the same command to resume",
              file=sys.stderr)
        return 130
