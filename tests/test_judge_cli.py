"""`python -m judge run` end to end against the loopback stand-in: faults, blindness, the key, bad input."""
import json
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from judge.llm.cli import main
from judge.standin import start_standin

KEY = "sk-test-SECRET-do-not-leak-4f9a2c"
MODELS = ("sys-BASELINE-7f3a", "sys-FINETUNED-9c1e")
QUESTIONS = ["I have had a dry cough and fever for three days, what should I do?",
             "My knee is swollen and hurts when I climb stairs.",
             "I feel dizzy and very thirsty after meals, could it be diabetes?"]


def write_pairs(folder: Path, n: int = 12) -> list[Path]:
    """One file per system, same ids and questions; each response carries an ITEM-i marker."""
    paths = []
    for m, model in enumerate(MODELS):
        path = folder / f"pairs_{m}.jsonl"
        with open(path, "w") as f:
            for i in range(n):
                q = QUESTIONS[i % 3]
                response = f"{'Rest and drink fluids. ' * (m + 1)}{q.split()[3]} care note ITEM-{i}."
                f.write(json.dumps({"id": str(i), "model": model, "prompt": q, "reference": "See a doctor.",
                                    "response": response}) + "\n")
        paths.append(path)
    return paths


def run_cli(pairs, out, url, *extra):
    argv = ["run", "--out", str(out), "--base-url", url, "--no-progress"]
    for p in pairs:
        argv += ["--pairs", str(p)]
    return main(argv + list(extra))


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return tmp_path


def every_file_text(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_faults_every_item_ends_scored_or_failed(env, capsys):
    seen = Counter()

    def script(index, body):
        text = body["messages"][1]["content"]
        item = next(t for t in text.split() if t.startswith("ITEM-")).strip(".")
        seen[text] += 1  # per (item, system): the repair request repeats this first user message
        plans = {"ITEM-3.": ["prose"] * 9, "ITEM-4.": ["prose"], "ITEM-5.": ["500"] * 9, "ITEM-6.": ["marks"],
                 "ITEM-7.": ["json_in_text"], "ITEM-8.": ["out_of_range", "out_of_range"], "ITEM-0.": ["drop"],
                 "ITEM-1.": ["truncated", "malformed"], "ITEM-2.": ["429:retry-after-ms=20", "503"],
                 "ITEM-9.": ["empty"], "ITEM-10.": ["slow:ms=30"]}
        plan = plans.get(item + ".", [])
        per_item = seen[text] - 1
        return plan[per_item] if per_item < len(plan) else "ok"

    log = []
    url, stop = start_standin(script=script, log=log)
    try:
        assert run_cli(write_pairs(env), env / "out", url, "--max-retries", "2", "--concurrency", "4") == 0
    finally:
        stop()
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in (env / "out" / "judgments.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["model"]) for r in rows) == sorted((str(i), m) for i in range(12) for m in MODELS)
    status = {(r["id"], r["model"]): r for r in rows}
    for m in MODELS:
        assert status[("3", m)]["status"] == "parse_failure" and len(status[("3", m)]["raw"]) == 2
        assert status[("3", m)]["accuracy"] is None  # never imputed
        assert status[("4", m)]["status"] == "ok" and status[("4", m)]["repaired"]
        assert status[("5", m)]["status"] == "error" and "3 attempts" in status[("5", m)]["problem"]
        assert status[("6", m)]["method"] == "marks" and status[("7", m)]["method"] == "json_in_text"
        assert status[("8", m)]["status"] == "parse_failure"
        assert status[("9", m)]["status"] == "ok" and status[("9", m)]["repaired"]
    assert sum(r["status"] == "ok" for r in rows) == 18
    table = json.loads((env / "out" / "table2.json").read_text())
    assert table["parse_failures"] == {m: 2 for m in MODELS} and table["errors"] == {m: 1 for m in MODELS}
    assert table["n"] == {m: 9 for m in MODELS}
    markdown = (env / "out" / "table2.md").read_text()
    assert "Parse failures | 2 | 2" in markdown and "served as standin-heuristic-NOT-A-JUDGE" in markdown
    assert "request errors" in err
    # Blind: no request ever named a system; the key is in no file, output or log line.
    assert not any(m in r["body"] for r in log for m in MODELS)
    assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in log)
    assert KEY not in every_file_text(env / "out") and KEY not in out + err


@pytest.mark.slow
def test_blind_order_is_seeded_and_interleaved(env):
    orders = []
    for seed in ("0", "0", "1"):
        log = []
        url, stop = start_standin(log=log)
        try:
            assert run_cli(write_pairs(env), env / f"out{len(orders)}", url, "--concurrency", "1", "--seed", seed) == 0
        finally:
            stop()
        orders.append([json.loads(r["body"])["messages"][1]["content"] for r in log])
    assert orders[0] == orders[1] and orders[0] != orders[2]
    first_half = orders[0][:12]
    assert 0 < sum("Rest and drink fluids. Rest" in t for t in first_half) < 12  # systems interleaved


@pytest.mark.slow
def test_fatal_stops_at_once_and_rerun_resumes(env, capsys):
    pairs = write_pairs(env)
    journal = env / "out" / "journal.jsonl"
    for fatal in ("quota", "401", "400"):
        log = []
        url, stop = start_standin(script=lambda i, body: fatal if i == 5 else "ok", log=log)
        try:
            done_before = len(journal.read_text().splitlines()) if journal.exists() else 0
            before = journal.read_bytes() if journal.exists() else b""
            assert run_cli(pairs, env / "out", url, "--concurrency", "1") == 1
        finally:
            stop()
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and KEY not in err
        assert "rerun the same command to resume" in err
        assert len(log) == 6  # stopped at the first fatal answer
        assert journal.read_bytes().startswith(before)  # nothing lost
        assert len(journal.read_text().splitlines()) == done_before + 5
    url, stop = start_standin()
    try:
        assert run_cli(pairs, env / "out", url) == 0
    finally:
        stop()
    keys = [json.loads(line)["key"] for line in journal.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == 24
    assert KEY not in every_file_text(env / "out")


def test_pairwise_position_bias_and_repeats(env):
    for bias, rate in ((False, 0.0), (True, 1.0)):
        url, stop = start_standin(position_bias=bias)
        out = env / f"out_{bias}"
        try:
            assert run_cli(write_pairs(env, 6), out, url, "--pairwise", "--repeats", "2") == 0
        finally:
            stop()
        table = json.loads((out / "table2.json").read_text())
        (p,) = table["pairwise"]
        assert p["n"] == 12 and p["position_bias_rate"] == rate and p["prefers_first"] == (12 if bias else 0)
        assert table["self_consistency"][MODELS[0]]["accuracy"]["exact_agreement"] == 1.0
        assert len((out / "judgments.jsonl").read_text().splitlines()) == 24
        assert len((out / "pairwise.jsonl").read_text().splitlines()) == 24  # 6 ids x 2 orders x 2 repeats
        assert table["usage"]["requests"] == 48 and table["usage"]["prompt_tokens"] > 0
        md = (out / "table2.md").read_text()
        assert "| A | B | judgments |" in md  # 12 = 6 ids x 2 repeats, not 12 items
        assert table["usage"]["estimated_cost_usd"] is None and "$" not in md  # no gpt-4o price for the stand-in
        assert "estimated cost not applicable (answered by the stand-in standin-heuristic-NOT-A-JUDGE" in md


def test_dry_run_prints_prompt_and_count_without_network_or_key(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pairs = write_pairs(tmp_path)
    assert main(["run", "--pairs", str(pairs[0]), "--pairs", str(pairs[1]), "--out", str(tmp_path / "o"),
                 "--dry-run", "--repeats", "2", "--pairwise"]) == 0
    out = capsys.readouterr().out
    assert "[Patient question]" in out and "Accuracy: Evaluates the factual" in out
    assert "requests: 96 to send (96 judgments in total, 0 already" in out  # (24 + 12 ids * 2 orders) * 2
    assert not any(m in out for m in MODELS) and not (tmp_path / "o").exists()


def test_limit_above_the_number_of_ids_is_said(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pairs = write_pairs(tmp_path, 6)
    assert run_cli(pairs, tmp_path / "o", closed_port_url(), "--dry-run", "--limit", "100") == 0
    err = capsys.readouterr().err
    assert err == "note: --limit 100 exceeds the 6 ids in the pairs files; judging all 6\n", err


def test_empty_first_pairs_file_is_refused(tmp_path, capsys):
    empty = bad(tmp_path / "empty.jsonl", "\n")
    pairs = write_pairs(tmp_path, 3)
    assert run_cli([empty, pairs[1]], tmp_path / "o", closed_port_url()) == 2  # bad input
    assert capsys.readouterr().err == f"error: {empty}: no records (empty file)\n"
    assert not (tmp_path / "o").exists()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def bad(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("case, expected", [
    ("malformed", ":2: invalid JSON"),
    ("missing", ":1: missing field 'response'"),
    ("mismatch", "has no record for id"),
    ("prompt", "has a different prompt"),
    ("nokey", "OPENAI_API_KEY is not set"),
    ("unreachable", "cannot connect"),
    ("nofile", "cannot read"),
])
def test_bad_input_one_line_and_journal_intact(env, monkeypatch, capsys, case, expected):
    pairs = write_pairs(env, 3)
    url = closed_port_url()
    extra = ["--max-retries", "1"]
    if case == "malformed":
        pairs[1] = bad(env / "m.jsonl", pairs[1].read_text().splitlines()[0] + "\n{oops\n")
    elif case == "missing":
        pairs[1] = bad(env / "m.jsonl", json.dumps({"id": "0", "model": "x", "prompt": "q"}) + "\n")
    elif case == "mismatch":
        pairs[1] = bad(env / "m.jsonl", "\n".join(pairs[1].read_text().splitlines()[:2]) + "\n")
    elif case == "prompt":
        lines = pairs[1].read_text().splitlines()
        lines[0] = json.dumps({**json.loads(lines[0]), "prompt": "another question"})
        pairs[1] = bad(env / "m.jsonl", "\n".join(lines) + "\n")
    elif case == "nokey":
        monkeypatch.delenv("OPENAI_API_KEY")
        url = "https://api.openai.com/v1"
    elif case == "nofile":
        pairs[1] = env / "absent.jsonl"
    out = env / "out"
    out.mkdir()
    journal = out / "journal.jsonl"
    journal.write_text('{"key": "k0", "status": "ok"}\n')
    assert run_cli(pairs, out, url, *extra) == (1 if case == "unreachable" else 2)  # failure while running / bad input
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    if case in ("malformed", "missing", "mismatch", "prompt", "nofile"):
        assert str(pairs[1]) in err
    assert journal.read_text() == '{"key": "k0", "status": "ok"}\n' and KEY not in err


@pytest.mark.slow
def test_standin_command_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "judge.standin", "--port", "0", "--fail-plan", "2*503"],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        line = proc.stdout.readline()
        assert "NOT A JUDGE" in line
        url = line.split(" at ")[1].split()[0]
        assert run_cli(write_pairs(tmp_path, 2), tmp_path / "out", url, "--concurrency", "1") == 0
        assert len((tmp_path / "out" / "judgments.jsonl").read_text().splitlines()) == 4
    finally:
        proc.terminate()
        proc.wait(timeout=10)
