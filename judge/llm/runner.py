"""Blind, seeded, resumable judging: build the jobs, send them concurrently, journal each answer."""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from itertools import combinations

from evalkit.records import Record

from judge.llm.client import JudgeClient, RequestFailed
from judge.llm.config import JudgeConfig
from judge.llm.journal import Journal, judgment_key
from judge.pairs import models_in_order
from judge.llm.parse import parse_scores, parse_verdict, reply_format
from judge.rubric import (PAIRWISE_SCHEMA, POINTWISE_SCHEMA, pairwise_messages, pointwise_messages,
                          repair_messages)


@dataclass(frozen=True)
class Job:
    """One request to the judge (plus at most one repair request).

    Attributes:
        kind: "pointwise" (score one response) or "pairwise" (compare two, shown in this order).
        id: the item id.
        models: (model,) or (shown_as_A, shown_as_B); never sent to the judge.
        repeat: 0..K-1 with --repeats K.
        messages: the exact chat messages sent.
        key: the journal key (see `judge.llm.journal.judgment_key`).
    """

    kind: str
    id: str
    models: tuple
    repeat: int
    messages: list
    key: str


def build_jobs(items: list[Record], config: JudgeConfig, repeats: int = 1, pairwise: bool = False,
               with_reference: bool = False) -> list[Job]:
    """All jobs of a run, in a random order fixed by `config.seed` (blind: systems interleaved)."""
    jobs = []

    def add(kind, item_id, models, repeat, messages):
        key = judgment_key(config.model, messages, config.sampling, repeat, [kind, item_id, *models])
        jobs.append(Job(kind, item_id, tuple(models), repeat, messages, key))

    by_id: dict[str, dict[str, Record]] = {}
    for item in items:
        by_id.setdefault(item.id, {})[item.model] = item
    for repeat in range(repeats):
        for item in items:
            ref = item.reference if with_reference else None
            add("pointwise", item.id, [item.model], repeat, pointwise_messages(item.prompt, item.response, ref))
        if pairwise:
            for item_id, answers in by_id.items():
                for a, b in combinations(models_in_order(items), 2):
                    for first, second in ((a, b), (b, a)):  # both orders, to measure position bias
                        x, y = answers[first], answers[second]
                        ref = x.reference if with_reference else None
                        add("pairwise", item_id, [first, second], repeat,
                            pairwise_messages(x.prompt, x.response, y.response, ref))
    random.Random(config.seed).shuffle(jobs)
    return jobs


async def judge_one(job: Job, client: JudgeClient) -> dict:
    """Ask the judge, read the answer, make one repair request if unreadable; a journal record.

    The record's status is "ok", "parse_failure" (raw replies kept, no score imputed) or "error"
    (transport failure after all retries; retried when the run is resumed). It keeps each reply's
    `finish_reason`, and `response_format` is the mode the server honoured (`parse.reply_format`),
    next to `response_format_requested`. A reply cut at `max_tokens` (finish_reason "length") that
    cannot be read is reported as truncated, and the repair asks the same question again with twice
    the cap (`repair_max_tokens`); other unreadable replies get the repair conversation.
    """
    pairwise = job.kind == "pairwise"
    schema, name, parse = ((PAIRWISE_SCHEMA, "verdict", parse_verdict) if pairwise
                           else (POINTWISE_SCHEMA, "judgment", parse_scores))
    record = {"key": job.key, "kind": job.kind, "id": job.id, "repeat": job.repeat,
              "judge_model": client.config.model, "raw": [], "finish_reasons": [], "repaired": False,
              "truncated": False, "usage": {"prompt_tokens": 0, "completion_tokens": 0}, "attempts": 0}
    record.update({"models": list(job.models)} if pairwise else {"model": job.models[0]})
    messages, parsed, max_tokens = job.messages, None, None
    for attempt in range(2):  # the request, then at most one repair request
        try:
            result = await client.chat(messages, schema, name, max_tokens=max_tokens)
        except RequestFailed as exc:
            record.update(status="error", problem=str(exc))
            break
        record["raw"].append(result.text)
        record["finish_reasons"].append(result.finish_reason)
        record["attempts"] += result.attempts
        record["response_format_requested"] = result.response_format
        record["response_format"] = reply_format(result.response_format, result.text, schema)
        record["finish_reason"] = result.finish_reason
        record["served_model"] = result.served_model
        for k in record["usage"]:
            record["usage"][k] += result.usage.get(k, 0)
        parsed = parse(result.text)
        record["repaired"] = attempt == 1
        if result.finish_reason == "length":
            record["truncated"] = True  # even when the scores came before the cut
        if parsed.ok:
            record.update(status="ok", method=parsed.method, justification=parsed.justification, problem="")
            break
        cap = max_tokens or client.config.max_tokens
        if result.finish_reason == "length":  # the reply did not fit: ask the same question with room to finish
            record.update(status="parse_failure", problem=f"reply truncated at max_tokens={cap} (finish_reason "
                          f"'length'): {parsed.problem}")
            messages, max_tokens = job.messages, 2 * cap
            record["repair_max_tokens"] = max_tokens
        else:
            record.update(status="parse_failure", problem=parsed.problem)
            messages = repair_messages(job.messages, result.text, pairwise)
    if record["status"] == "ok" and pairwise:
        record["winner"] = parsed.value
        record["winner_model"] = {"A": job.models[0], "B": job.models[1]}.get(parsed.value, "tie")
    elif record["status"] == "ok":
        record["scores"] = parsed.value
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return record


async def run_jobs(jobs: list[Job], client: JudgeClient, journal: Journal, progress=None) -> dict:
    """Judge every job not yet done in the journal; append each record as soon as it is finished.

    Uses `client.config.concurrency` workers. A `FatalJudgeError` cancels the requests in flight and
    propagates; every record written before it stays in the journal, so rerunning resumes.

    Returns:
        Counts of this session: {"requested": jobs sent, "skipped": jobs already in the journal}.
    """
    todo = [job for job in jobs if job.key not in journal]
    queue: asyncio.Queue = asyncio.Queue()
    for job in todo:
        queue.put_nowait(job)
    counts = {"ok": 0, "parse_failure": 0, "error": 0}
    write_lock = asyncio.Lock()  # one durable append at a time, off the event loop (fsync takes ms)
    writes: set[asyncio.Task] = set()  # appends in progress: finished even if the run is cancelled

    async def append(record: dict) -> None:
        async with write_lock:
            await asyncio.to_thread(journal.append, record)

    def settled(write: asyncio.Task) -> None:
        writes.discard(write)
        if not write.cancelled():
            # Retrieved here: a write that fails (a full disk) after its worker was cancelled by another
            # worker's failure is otherwise "never retrieved", and asyncio prints it as a traceback.
            write.exception()

    async def worker():
        while not queue.empty():
            job = queue.get_nowait()
            record = await judge_one(job, client)
            write = asyncio.ensure_future(append(record))
            writes.add(write)
            write.add_done_callback(settled)
            await asyncio.shield(write)
            counts[record["status"]] += 1
            if progress is not None:
                progress.set_postfix({k: v for k, v in counts.items() if v}, refresh=False)
                progress.update(1)

    workers = [asyncio.create_task(worker()) for _ in range(min(client.config.concurrency, len(todo)))]
    if not workers:
        return {"requested": 0, "skipped": len(jobs), **counts}
    try:
        done, pending = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        while writes:  # a judgment that was finished is never lost to a cancellation
            await asyncio.gather(*list(writes), return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            raise task.exception()
    return {"requested": len(todo), "skipped": len(jobs) - len(todo), **counts}
