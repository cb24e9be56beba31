"""A run killed midway (SIGKILL, or a cancelled task) and rerun ends with every judgment exactly once."""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from judge.llm.cli import main
from judge.llm.client import JudgeClient
from judge.llm.config import JudgeConfig
from judge.llm.journal import Journal
from judge.pairs import paired_records
from judge.llm.runner import build_jobs, run_jobs
from judge.standin import start_standin

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-test-SECRET-resume-77e1"


def write_pairs(folder: Path, n: int) -> list[Path]:
    paths = []
    for model in ("base-sys", "tuned-sys"):
        path = folder / f"{model}.jsonl"
        path.write_text("".join(json.dumps({"id": f"q{i}", "model": model, "prompt": f"Question {i} about fever?",
                                            "reference": "r", "response": f"{model} says rest, answer {i}."}) + "\n"
                                for i in range(n)))
        paths.append(path)
    return paths


def journal_keys(path: Path) -> list[str]:
    keys = []
    for line in path.read_text().splitlines():
        try:
            keys.append(json.loads(line)["key"])
        except ValueError:
            pass  # the torn line of the crash
    return keys


@pytest.mark.slow
def test_sigkill_midway_then_rerun_exactly_once(tmp_path):
    pairs = write_pairs(tmp_path, 30)
    out = tmp_path / "out"
    journal = out / "journal.jsonl"
    log = []
    url, stop = start_standin(latency_ms=40, log=log)
    try:
        argv = [sys.executable, "-m", "judge", "run", "--out", str(out), "--base-url", url, "--concurrency", "4",
                "--no-progress", "--pairs", str(pairs[0]), "--pairs", str(pairs[1])]
        proc = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "OPENAI_API_KEY": KEY},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and journal.read_text().count("\n") >= 12:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = len(journal_keys(journal))
        assert 12 <= first < 60, "the run must be killed midway"
        with open(journal, "ab") as f:  # as if the crash had cut a write in half
            f.write(b'{"key": "deadbeef", "status": "o')
        sent_before = len(log)
        assert main(argv[3:]) == 0
    finally:
        stop()
    keys = journal_keys(journal)
    assert len(keys) == len(set(keys)) == 60
    rows = [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]
    assert len({(r["id"], r["model"]) for r in rows}) == len(rows) == 60
    assert len(log) - sent_before == 60 - first  # done judgments were not requested again
    assert sent_before <= first + 4  # the crash lost at most the requests in flight
    assert all(KEY not in p.read_text() for p in out.iterdir())


def test_cancelled_run_resumes(tmp_path):
    items = paired_records(write_pairs(tmp_path, 20))
    url, stop = start_standin(latency_ms=20)
    config = JudgeConfig(base_url=url, concurrency=2)
    jobs = build_jobs(items, config)
    path = tmp_path / "journal.jsonl"

    async def partial():
        with Journal(path) as journal:
            async with JudgeClient(config) as client:
                task = asyncio.create_task(run_jobs(jobs, client, journal))
                while len(journal.records) < 6:
                    await asyncio.sleep(0.005)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass

    async def full():
        with Journal(path) as journal:
            async with JudgeClient(config) as client:
                return await run_jobs(jobs, client, journal)

    try:
        asyncio.run(partial())
        done = len(journal_keys(path))
        assert 6 <= done < 40
        counts = asyncio.run(full())
    finally:
        stop()
    assert counts["skipped"] == done and counts["requested"] == 40 - done
    keys = journal_keys(path)
    assert len(keys) == len(set(keys)) == 40 == len({job.key for job in jobs})


def test_judge_files_runs_inside_a_running_event_loop(tmp_path):
    """A Jupyter kernel's thread already runs an event loop, where asyncio.run refuses (the tutorial calls
    judge_files there): the judging then gets its own loop in a worker thread, with the same results."""
    from judge import JudgeOptions, judge_files

    pairs = write_pairs(tmp_path, 3)
    url, stop = start_standin()
    config = JudgeConfig(base_url=url, model="standin")

    async def from_a_notebook_cell():
        return judge_files(pairs, tmp_path / "in-loop", config, JudgeOptions(progress=False))

    try:
        inside = asyncio.run(from_a_notebook_cell())
        outside = judge_files(pairs, tmp_path / "plain", config, JudgeOptions(progress=False))
    finally:
        stop()
    assert inside == outside
    assert (tmp_path / "in-loop" / "judgments.jsonl").read_text() == (tmp_path / "plain" / "judgments.jsonl").read_text()


def test_an_interrupt_inside_a_running_event_loop_stops_the_judging_and_a_rerun_resumes(tmp_path):
    """The notebook's stop button (SIGINT, so KeyboardInterrupt while judge_files waits for its worker thread)
    cancels the judging at once; the journal keeps what was judged and the same call finishes the rest."""
    import threading

    from judge import JudgeOptions, judge_files

    pairs = write_pairs(tmp_path, 20)
    url, stop = start_standin(latency_ms=60)
    config = JudgeConfig(base_url=url, model="standin", concurrency=1)
    out = tmp_path / "out"

    async def from_a_notebook_cell():
        return judge_files(pairs, out, config, JudgeOptions(progress=False))

    loop = asyncio.new_event_loop()  # like a kernel's loop: no SIGINT handler of asyncio's, Python's default one
    timer = threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(from_a_notebook_cell())
        assert time.monotonic() - started < 2.0  # 40 requests x 60 ms take 2.4 s or more: it stopped early
        done = len(journal_keys(out / "journal.jsonl"))
        assert 0 < done < 40
        table = loop.run_until_complete(from_a_notebook_cell())
    finally:
        timer.cancel()
        loop.close()
        stop()
    keys = journal_keys(out / "journal.jsonl")
    assert len(keys) == len(set(keys)) == 40 and table["models"] == ["base-sys", "tuned-sys"]
