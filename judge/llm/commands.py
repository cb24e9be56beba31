"""Track B as a function: `judge_files(pairs, out, config, options)` judges the answers and writes the outputs.

`python -m judge run` (`cli.py`) turns its flags into a `JudgeConfig` and `JudgeOptions` and calls it; so does
the pipeline. Outputs in `out`: `journal.jsonl` (every judgment, appended as it arrives; what makes a rerun
resume), `judgments.jsonl` (and `pairwise.jsonl`), `table2.json`, `table2.md`.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from plumbing.durable import write_text_atomic
from plumbing.errors import os_problem
from plumbing.files import folder_problem
from plumbing.flags import check_fields, knob
from plumbing.signals import Interrupted, sigterm_cancels

from judge.errors import FatalJudgeError, JudgeError
from judge.llm.client import FORMAT_MODES, JudgeClient, request_body
from judge.llm.config import AT_LEAST_1, JudgeConfig, is_loopback
from judge.llm.journal import Journal
from judge.llm.pricing import estimate_cost
from judge.llm.runner import build_jobs, run_jobs
from judge.pairs import models_in_order, paired_records, sample_ids
from judge.rubric import DIMENSIONS, PAIRWISE_SCHEMA, POINTWISE_SCHEMA
from judge.standin.answers import SERVED_MODEL as STANDIN_MODEL
from judge.table import render_markdown, table2


@dataclass(frozen=True)
class JudgeOptions:
    """What is judged and how it is reported (the endpoint and sampling are `JudgeConfig`'s).

    Attributes:
        repeats: judge each item K times (self-consistency).
        pairwise: also compare the systems pairwise, in both orders (position bias).
        limit: judge N ids drawn at random with `config.seed` (the paper judged N = 20); None: all.
        with_reference: show the physician's reference answer to the judge.
        price: USD per million (prompt, completion) tokens for the cost estimate; None: the known price list.
        progress: show a progress bar.
        dry_run: print one exact prompt and the request count; send nothing.
    """

    repeats: int = knob(1, "judge each item K times", check=AT_LEAST_1, metavar="K")
    pairwise: bool = knob(False, "also compare systems pairwise, both orders")
    limit: int | None = knob(None, "judge N ids drawn at random (seeded)", type=int, check=AT_LEAST_1, metavar="N")
    with_reference: bool = knob(False, "show the physician's reference answer")
    price: tuple[float, float] | None = knob(None, "USD per million prompt,completion tokens", type=str,
                                             metavar="IN,OUT")
    progress: bool = knob(True, "no progress bar", flag="--no-progress")
    dry_run: bool = knob(False, "print one exact prompt and the request count")

    def check(self) -> None:
        check_fields(self, JudgeError)


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
    """Write a whole file or nothing (`plumbing.durable.write_text_atomic`).

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


def judge_files(pairs: list[str | Path], out: str | Path, config: JudgeConfig,
                options: JudgeOptions = JudgeOptions(), state: dict | None = None) -> dict | None:
    """Track B: judge the pairs files blind and resumably; write judgments.jsonl, table2.json, table2.md.

    Args:
        pairs: one JSONL pairs file per system, the baseline first.
        out: the output folder; its `journal.jsonl` makes a rerun resume (finished judgments are reused).
        config: the endpoint, the judge model, the sampling and the limits (`config.seed` fixes the order).
        options: what is judged and how it is reported (see `JudgeOptions`).
        state: receives "journal" and "jobs" once known (for the CLI's interruption line).

    Returns:
        The Table 2 dict, or None for a dry run.

    Raises:
        JudgeError: bad input (exit status 2), e.g. no key for a remote endpoint; FatalJudgeError: the endpoint
            refused the run (1); EvalkitError: a malformed pairs file (2).
    """
    state = {} if state is None else state
    out = Path(out)
    problem = folder_problem(out)
    if problem:
        raise JudgeError(f"--out {out}: {problem}")
    options.check()
    items = paired_records(list(pairs))
    models = models_in_order(items)
    if options.pairwise and len(models) < 2:
        raise JudgeError(f"--pairwise: needs at least two systems, the pairs files hold one ({models[0]!r}); "
                         "pass one --pairs file per system")
    _note_limit(options.limit, items)
    items = sample_ids(items, options.limit, config.seed)
    jobs = build_jobs(items, config, options.repeats, options.pairwise, options.with_reference)
    journal = Journal(out / "journal.jsonl")
    state.update(journal=journal, jobs=jobs)
    if options.dry_run:
        _warn_torn(journal)
        _dry_run(jobs, journal, config)
        return None
    check_key(config)
    with journal:  # locked and read again: only now is the count of torn lines final
        _warn_torn(journal)
        try:
            session = _run_async(_judge(jobs, config, journal, options.progress))
        except FatalJudgeError as exc:
            kept = sum(job.key in journal for job in jobs)
            raise FatalJudgeError(f"{exc} (stopped; {kept}/{len(jobs)} judgments kept in {journal.path}, "
                                  "rerun the same command to resume)") from None
        return _write_outputs(out, options, config, jobs, journal, items, models, session)


def _run_async(coroutine):
    """`asyncio.run(coroutine)`, also from a thread whose event loop is already running (a Jupyter kernel's).

    There `asyncio.run` refuses, so the coroutine runs on its own loop in a worker thread while this thread
    waits; an interrupt of the wait (the notebook's stop button, KeyboardInterrupt) cancels it, as Ctrl-C
    cancels `asyncio.run`: the judgments already in the journal are kept and a rerun resumes.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop running here: the command line, the pipeline, a script
        return asyncio.run(coroutine)
    running: dict = {}

    async def main():
        running.update(loop=asyncio.get_running_loop(), task=asyncio.current_task())
        return await coroutine

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="judge") as pool:
        future = pool.submit(asyncio.run, main())
        try:
            return future.result()
        except KeyboardInterrupt:
            if running:
                running["loop"].call_soon_threadsafe(running["task"].cancel)
            raise


def check_key(config: JudgeConfig) -> None:
    """A remote endpoint needs a key (from OPENAI_API_KEY); refused in one line before any work."""
    if config.api_key is None and not is_loopback(config.endpoint):
        raise JudgeError(f"OPENAI_API_KEY is not set; {config.endpoint} needs a key (see docs/judge.md)")


def _warn_torn(journal: Journal) -> None:
    if journal.torn:
        print(f"warning: {journal.path}: skipped {journal.torn} unreadable line(s) (a crash cut a write); "
              "those judgments are requested again", file=sys.stderr)


def _write_outputs(out: Path, options: JudgeOptions, config: JudgeConfig, jobs, journal: Journal, items, models,
                   session: dict) -> dict:
    """judgments.jsonl (pairwise.jsonl), table2.json and table2.md from the journal, then the summary lines.

    Raises:
        JudgeError: exit status 1 when every judgment of the run failed (the tables are written first).
    """
    order = {i: n for n, i in enumerate(dict.fromkeys(item.id for item in items))}
    rows, pair_rows = _rows(jobs, journal, "pointwise", order), _rows(jobs, journal, "pairwise", order)
    records = [journal.get(job.key) for job in jobs]
    usage = {k: sum(r["usage"][k] for r in records) for k in ("prompt_tokens", "completion_tokens")}
    served = sorted({r["served_model"] for r in records if r.get("served_model")})
    usage = {**_usage_cost(config.model, usage, options.price, served), "requests": sum(r["attempts"] for r in records)}
    table = table2(rows, models, options.repeats, pair_rows if options.pairwise else None, config.model, usage, served)
    _write_atomic(out / "judgments.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    if options.pairwise:
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
    return table
