"""`python -m judge run` under faults: error bodies, truncation, failed runs, the lock, signals, a full disk."""
from __future__ import annotations

import errno
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import fill_disk
from judge.llm.journal import Journal
from judge.standin import start_standin
from test_judge_cli import KEY, MODELS, closed_port_url, every_file_text, run_cli, write_pairs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return tmp_path


def journal_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines() if line.strip()]


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "judgments.jsonl").read_text().splitlines()]


def test_fastapi_style_error_body_is_shown_with_the_key_redacted(env, capsys):
    url, stop = start_standin(script=["detail400"])
    try:
        assert run_cli(write_pairs(env, 2), env / "out", url, "--concurrency", "1") == 1
    finally:
        stop()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HTTP 400: None" not in err and KEY not in err
    assert ("HTTP 400: stand-in scripted detail: model 'gpt-4o' does not exist (request authorised with Bearer ***)"
            in err)


def test_finish_reason_and_the_honoured_response_format_are_recorded(env):
    behaviour = {"ITEM-0.": "ok", "ITEM-1.": "json_in_text", "ITEM-2.": "marks"}

    def script(index, body):
        text = body["messages"][1]["content"]
        return next((b for k, b in behaviour.items() if k in text), "ok")

    url, stop = start_standin(script=script)
    try:
        assert run_cli(write_pairs(env, 3), env / "out", url) == 0
    finally:
        stop()
    by_item = {(r["id"], r["model"]): r for r in journal_records(env / "out")}
    for m in MODELS:
        ok, in_text, marks = by_item[("0", m)], by_item[("1", m)], by_item[("2", m)]
        assert all(r["finish_reason"] == "stop" and r["finish_reasons"] == ["stop"] for r in (ok, in_text, marks))
        assert all(r["response_format_requested"] == "json_schema" for r in (ok, in_text, marks))
        assert ok["response_format"] == "json_schema" and ok["method"] == "json"
        assert in_text["response_format"] == "none" and in_text["method"] == "json_in_text"  # server ignored it
        assert marks["response_format"] == "none" and marks["method"] == "marks"
    row = {(r["id"], r["model"]): r for r in rows(env / "out")}[("1", MODELS[0])]
    assert row["finish_reason"] == "stop" and row["response_format"] == "none" and row["truncated"] is False

    url, stop = start_standin(reject_formats={"json_schema"})  # the server refuses strict schemas
    try:
        assert run_cli(write_pairs(env, 1), env / "out2", url) == 0
    finally:
        stop()
    record = journal_records(env / "out2")[0]
    assert record["response_format_requested"] == "json_object" and record["response_format"] == "json_object"


def test_truncated_reply_is_reported_and_asked_again_with_twice_the_cap(env):
    log = []
    url, stop = start_standin(script=lambda i, body: "length" if body["max_tokens"] < 800 else "ok", log=log)
    try:
        assert run_cli(write_pairs(env, 2), env / "out", url, "--concurrency", "1") == 0
    finally:
        stop()
    for record in journal_records(env / "out"):
        assert record["status"] == "ok" and record["truncated"] and record["repaired"]
        assert record["finish_reasons"] == ["length", "stop"] and record["repair_max_tokens"] == 800
    bodies = [json.loads(r["body"]) for r in log]
    assert [b["max_tokens"] for b in bodies] == [400, 800] * 4
    assert all(b2["messages"] == b1["messages"] for b1, b2 in zip(bodies[::2], bodies[1::2]))  # same question


def test_a_run_whose_every_judgment_failed_exits_1_in_one_line(env, capsys):
    url, stop = start_standin(script=lambda i, body: "length")  # always cut, even with twice the cap
    try:
        assert run_cli(write_pairs(env, 3), env / "out", url) == 1
    finally:
        stop()
    err = capsys.readouterr().err
    assert err == (f"error: every one of the 6 judgments failed (6 unreadable replies, 0 request errors); the replies "
                   f"and problems are in {env / 'out'}/judgments.jsonl\n")
    judged = rows(env / "out")
    assert all(r["status"] == "parse_failure" and r["truncated"] for r in judged)
    assert all(r["problem"].startswith("reply truncated at max_tokens=800 (finish_reason 'length')") for r in judged)
    assert (env / "out" / "table2.md").exists()


@pytest.mark.parametrize("flag, value, env_var", [
    ("--base-url", "notaurl", None), ("--base-url", "http://", None), ("--base-url", "ftp://host/v1", None),
    (None, "notaurl", "OPENAI_BASE_URL"),
])
def test_a_bad_base_url_is_named_before_the_key(tmp_path, monkeypatch, capsys, flag, value, env_var):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    if env_var:
        monkeypatch.setenv(env_var, value)
    argv = ["run", "--out", str(tmp_path / "out"), "--no-progress"] + [a for p in write_pairs(tmp_path, 2)
                                                                       for a in ("--pairs", str(p))]
    from judge.llm.cli import main
    assert main(argv + ([flag, value] if flag else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag or env_var}: {value!r} ") and "OPENAI_API_KEY" not in err
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_pairwise_needs_two_systems(tmp_path, capsys):
    pairs = write_pairs(tmp_path, 2)[:1]
    assert run_cli(pairs, tmp_path / "out", closed_port_url(), "--pairwise") == 2
    assert capsys.readouterr().err == ("error: --pairwise: needs at least two systems, the pairs files hold one "
                                       f"('{MODELS[0]}'); pass one --pairs file per system\n")
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_is_bad_input(tmp_path, capsys):
    (tmp_path / "out").write_text("x")
    assert run_cli(write_pairs(tmp_path, 2), tmp_path / "out", closed_port_url()) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path / 'out'}: exists and is not a folder\n"


HOLD_JOURNAL = textwrap.dedent("""
    import sys, time
    from judge.llm.journal import Journal
    journal = Journal(sys.argv[1]).open()  # held while the object lives
    print("locked", flush=True)
    time.sleep(60)
""")


@pytest.mark.slow
def test_a_journal_in_use_is_refused_and_a_killed_holder_does_not_block(env, capsys):
    out = env / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_JOURNAL, str(out / "journal.jsonl")], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    log = []
    url, stop = start_standin(log=log)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert run_cli(write_pairs(env, 2), out, url) == 2
        assert capsys.readouterr().err == (f"error: {out / 'journal.lock'}: another `python -m judge run` (pid "
                                           f"{holder.pid}) is using this folder; wait for it to end, or use another "
                                           "output folder\n")
        assert log == [] and (out / "journal.jsonl").read_bytes() == b""  # nothing requested, nothing written
        holder.kill()  # SIGKILL: the kernel releases the lock
        holder.wait(timeout=30)
        assert run_cli(write_pairs(env, 2), out, url) == 0
    finally:
        holder.kill()
        stop()
    assert len(log) == 4 and len(journal_records(out)) == 4


def judge_process(pairs, out, url, *extra) -> subprocess.Popen:
    argv = [sys.executable, "-m", "judge", "run", "--out", str(out), "--base-url", url, "--no-progress", *extra]
    for p in pairs:
        argv += ["--pairs", str(p)]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_two_runs_on_one_journal_judge_each_item_once(env):
    log = []
    url, stop = start_standin(latency_ms=500, log=log)
    pairs = write_pairs(env, 12)
    try:
        first = judge_process(pairs, env / "out", url, "--concurrency", "2")
        wait_for(lambda: len(log) >= 1)
        second = judge_process(pairs, env / "out", url, "--concurrency", "2")
        _, err2 = second.communicate(timeout=120)
        _, err1 = first.communicate(timeout=120)
    finally:
        stop()
    assert first.returncode == 0, err1
    assert second.returncode == 2 and err2.count("\n") == 1 and "journal.lock: another `python -m judge run`" in err2
    texts = Counter(json.loads(r["body"])["messages"][1]["content"] for r in log)
    assert len(texts) == 24 and set(texts.values()) == {1}  # every item requested exactly once
    assert len(rows(env / "out")) == 24


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_cleanly_and_the_rerun_resumes(env, sig, code):
    log = []
    url, stop = start_standin(latency_ms=200, log=log)
    pairs = write_pairs(env, 12)
    journal = env / "out" / "journal.jsonl"
    try:
        proc = judge_process(pairs, env / "out", url, "--concurrency", "2")
        wait_for(lambda: journal.exists() and journal.read_text().count("\n") >= 3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        kept = journal_records(env / "out")
        assert proc.returncode == code, err
        assert err == f"interrupted; rerun to resume ({len(kept)}/24 judgments kept in {journal})\n"
        assert 3 <= len(kept) < 24 and journal.read_text().endswith("\n")  # whole lines only
        assert not (env / "out" / "judgments.jsonl").exists()
        assert run_cli(pairs, env / "out", url) == 0  # in-process rerun resumes
    finally:
        stop()
    keys = [r["key"] for r in journal_records(env / "out")]
    assert len(keys) == len(set(keys)) == 24  # no judgment lost or duplicated
    assert len(rows(env / "out")) == 24 and KEY not in every_file_text(env / "out")


class FullDiskAfter:
    """A journal file whose disk fills up after `n` whole records: half of the next line, then ENOSPC."""

    def __init__(self, f, n: int):
        self.f, self.n = f, n

    def write(self, data) -> int:
        if self.n == 0:
            self.f.write(bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.n -= 1
        return self.f.write(data)

    def fileno(self) -> int:
        return self.f.fileno()

    def close(self) -> None:
        self.f.close()


def small_disk(monkeypatch, writes: int):
    """The journal's file fails with ENOSPC after `writes` writes; returns the real `Journal.open`."""
    real_open = Journal.open

    def open_on_a_small_disk(self):
        real_open(self)
        if not isinstance(self._file, FullDiskAfter):
            self._file = FullDiskAfter(self._file, writes)
        return self

    monkeypatch.setattr(Journal, "open", open_on_a_small_disk)
    return real_open


def test_full_disk_on_the_journal_then_resume_after_freeing_space(env, monkeypatch, capsys):
    real_open = small_disk(monkeypatch, 5)
    pairs = write_pairs(env, 12)
    journal = env / "out" / "journal.jsonl"
    url, stop = start_standin()
    try:
        assert run_cli(pairs, env / "out", url, "--concurrency", "1") == 1
        err = capsys.readouterr().err
        assert err == (f"error: {journal}: cannot write the journal (No space left on device); every judgment "
                       "recorded before is kept; free space and rerun the same command to resume\n")
        assert len(journal_records_whole(journal)) == 5 and not journal.read_text().endswith("\n")  # a torn line
        monkeypatch.setattr(Journal, "open", real_open)  # space freed
        assert run_cli(pairs, env / "out", url) == 0
    finally:
        stop()
    assert "skipped 1 unreadable line(s)" in capsys.readouterr().err
    keys = [r["key"] for r in journal_records_whole(journal)]
    assert len(keys) == len(set(keys)) == 24 and len(rows(env / "out")) == 24


def test_full_disk_with_writes_in_flight_is_one_line_not_a_traceback(env, monkeypatch, capsys, caplog):
    """Eight workers: the writes that fail after the first failure has cancelled their workers are
    retrieved too, so asyncio never prints one as "Task exception was never retrieved" with its traceback."""
    small_disk(monkeypatch, 2)
    pairs = write_pairs(env, 12)
    url, stop = start_standin()
    try:
        for attempt in range(4):
            assert run_cli(pairs, env / f"out{attempt}", url, "--concurrency", "8") == 1
            gc.collect()  # a task whose exception nobody retrieved is reported when it is collected
    finally:
        stop()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") and "cannot write the journal" in line for line in lines)
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    for attempt in range(4):  # the two records written before the disk filled are whole, the rest torn or absent
        assert len(journal_records_whole(env / f"out{attempt}" / "journal.jsonl")) == 2


def journal_records_whole(path: Path) -> list[dict]:
    """Whole records only (a torn line is skipped, as the journal itself reads it)."""
    out = []
    for line in path.read_text().split("\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@pytest.mark.slow
@pytest.mark.parametrize("concurrency", ["1", "8"])  # 8: writes of other workers fail while the first one stops
def test_full_disk_for_real_on_a_tiny_tmpfs(env, tiny_tmpfs, capsys, caplog, concurrency):
    disk = tiny_tmpfs("64k")
    out = disk / "out"
    pairs = write_pairs(env, 12)
    out.mkdir()
    (out / "journal.lock").write_text("")  # so the lock file itself needs no new block
    filler = fill_disk(disk, leave=8192)
    url, stop = start_standin()
    try:
        assert run_cli(pairs, out, url, "--concurrency", concurrency) == 1
        gc.collect()  # a write whose failure nobody retrieved would be printed now, with its traceback
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
        assert err.startswith(f"error: {out / 'journal.jsonl'}: cannot write the journal")
        assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
        kept = {r["key"] for r in journal_records_whole(out / "journal.jsonl")}
        assert 0 < len(kept) < 24
        filler.unlink()
        assert run_cli(pairs, out, url) == 0
    finally:
        stop()
    keys = [r["key"] for r in journal_records_whole(out / "journal.jsonl")]
    assert len(keys) == len(set(keys)) == 24 and kept <= set(keys) and len(rows(out)) == 24
