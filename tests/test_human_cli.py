"""`python -m judge.human serve|export` as a user runs them: links printed, signals, one-line errors and
exit codes (0 ok, 1 running failure, 2 bad input, 130 Ctrl-C, 143 SIGTERM), nothing written on bad input."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from _human_util import write_pairs
from judge.human.cli import main
from judge.human.store import Store
from judge.human.study import open_study

REPO = Path(__file__).resolve().parents[1]


def start_serve(*args) -> tuple[subprocess.Popen, list[str]]:
    """Start `serve` on a free port; return the process and the lines it printed up to the instructions."""
    proc = subprocess.Popen([sys.executable, "-m", "judge.human", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Send each rater"):
            break
    else:
        proc.wait(10)
        pytest.fail(f"serve stopped early: {proc.stderr.read()}")
    return proc, lines


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_serve_prints_one_link_per_rater_and_stops_on_signals(tmp_path, sig, code):
    pairs = write_pairs(tmp_path, 3)
    store = tmp_path / "ratings.sqlite"
    proc, lines = start_serve("--pairs", pairs[0], "--pairs", pairs[1], "--store", str(store),
                              "--raters", "alice,bob,carol")
    try:
        links = dict(re.findall(r"^  (\w+): (http://127\.0\.0\.1:\d+/r/[A-Za-z0-9_-]{43}/)", "\n".join(lines), re.M))
        assert sorted(links) == ["alice", "bob", "carol"] and len(set(links.values())) == 3
        session = httpx.get(links["bob"] + "api/session").json()
        assert session["rater"] == "bob" and session["total"] == 6
        assert "SYSNAME" not in "\n".join(lines)
        second = subprocess.run([sys.executable, "-m", "judge.human", "serve", "--port", "0", "--store", str(store),
                                 "--raters", "alice,bob,carol", "--new-links", "all"],
                                capture_output=True, text=True, cwd=REPO, timeout=60)
        assert second.returncode == 2 and second.stderr.count("\n") == 1 and second.stdout == ""
        assert f"is served by another `python -m judge.human serve` (pid {proc.pid})" in second.stderr
        assert httpx.get(links["bob"] + "api/session").status_code == 200  # no link was replaced
    finally:
        proc.send_signal(sig)
        assert proc.wait(10) == code
    err = proc.stderr.read()
    assert "Traceback" not in err and "saved in the store" in err
    # a second start keeps the links (and says so), and --new-links replaces one
    proc, lines = start_serve("--store", str(store), "--raters", "alice,bob,carol", "--new-links", "bob")
    try:
        text = "\n".join(lines)
        assert "alice: link issued at an earlier start still works" in text
        new_bob = re.search(r"bob: (http://\S+/)", text)[1]
        port = re.search(r":(\d+)/r/", new_bob)[1]
        assert httpx.get(new_bob + "api/session").status_code == 200
        assert httpx.get(links["alice"].replace(re.search(r":(\d+)/r/", links["alice"])[1], port, 1)
                         + "api/session").status_code == 200
        assert httpx.get(links["bob"].replace(re.search(r":(\d+)/r/", links["bob"])[1], port, 1)
                         + "api/session").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 143


def test_serve_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    pairs = write_pairs(tmp_path, 2)
    store = tmp_path / "r.sqlite"
    cases = [
        (["--pairs", pairs[0], "--store", str(store), "--raters", "alice,alice"], "error: --raters:"),
        (["--pairs", str(tmp_path / "missing.jsonl"), "--store", str(store), "--raters", "a"], "missing.jsonl"),
        (["--store", str(store), "--raters", "a"], "error: --pairs:"),
        (["--pairs", pairs[0], "--store", str(store), "--raters", "a", "--pairwise"], "error: --pairwise:"),
        (["--pairs", pairs[0], "--store", str(store), "--raters", "a", "--per-rater", "0"], "error: --per-rater:"),
        (["--pairs", pairs[0], "--store", str(tmp_path / "no" / "r.sqlite"), "--raters", "a"], "error: --store:"),
    ]
    (tmp_path / "bad.jsonl").write_text('{"id": "1", "model": "m", "prompt": "q"}\n')
    cases.append((["--pairs", str(tmp_path / "bad.jsonl"), "--store", str(store), "--raters", "a"], "bad.jsonl:1:"))
    for argv, expected in cases:
        assert main(["serve", "--port", "0", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expected in err and "\n" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "pairs_0.jsonl", "pairs_1.jsonl"]


def test_serve_port_in_use_is_exit_1_before_anything_is_written(tmp_path, capsys):
    pairs = write_pairs(tmp_path, 2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--pairs", pairs[0], "--store", str(tmp_path / "r.sqlite"), "--raters", "a",
                     "--port", str(port)])
    assert code == 1
    assert capsys.readouterr().err.startswith(f"error: --port: cannot listen on 127.0.0.1:{port}")
    assert not (tmp_path / "r.sqlite").exists()


@pytest.mark.slow
def test_export_cli_and_its_errors(tmp_path, capsys):
    pairs = write_pairs(tmp_path, 2)
    proc, _ = start_serve("--pairs", pairs[0], "--pairs", pairs[1], "--store", str(tmp_path / "r.sqlite"),
                          "--raters", "alice")
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    out = tmp_path / "out"
    assert main(["export", "--store", str(tmp_path / "r.sqlite"), "--out", str(out), "--bootstrap", "10"]) == 0
    assert "0 final ratings" in capsys.readouterr().out
    assert json.loads((out / "agreement.json").read_text())["n_ratings"] == 0
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    (tmp_path / "a_file").write_text("x")
    cases = [(["--store", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "o2")], "no such ratings store"),
             (["--store", str(pairs[0]), "--out", str(tmp_path / "o2")], "not a ratings store"),
             (["--store", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "o2"), "--judgments",
               str(tmp_path / "broken.jsonl")], "error: --judgments: "),
             (["--store", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "o2"), "--scores",
               str(tmp_path / "nope.jsonl")], "error: --scores: "),
             (["--store", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "a_file")], "error: --out: "),
             (["--store", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "o2"), "--bootstrap", "0"],
              "error: --bootstrap")]
    for argv, expected in cases:
        assert main(["export", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expected in err and "\n" not in err, err
    assert not (tmp_path / "o2").exists()


def main_in_thread(argv: list[str], timeout: float = 30) -> int:
    """`main(argv)` that must return (a refusal) instead of serving; fails the test if it serves."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    thread.start()
    thread.join(timeout)
    assert result, f"{argv} did not stop: it serves"
    return result[0]


def token_hashes(store: Path) -> dict[str, str]:
    s = Store(store, readonly=True)
    try:
        return {r["name"]: r["token_sha256"] for r in s.raters()}
    finally:
        s.close()


def test_a_store_another_server_holds_is_refused_before_a_link_changes(tmp_path, capsys):
    pairs = write_pairs(tmp_path, 2)
    store = tmp_path / "r.sqlite"
    first = open_study(store, pairs, ["alice", "bob"], exclusive=True)  # what a running `serve` holds
    try:
        before = token_hashes(store)
        argv = ["serve", "--port", "0", "--store", str(store), "--raters", "alice,bob", "--new-links", "all"]
        assert main_in_thread(argv) == 2
        err = capsys.readouterr().err
        assert err == (f"error: --store: {store} is served by another `python -m judge.human serve` (pid "
                       f"{os.getpid()}); one server per store: stop that one first (Ctrl-C), then start again "
                       "(with --new-links to replace a link)\n")
        assert token_hashes(store) == before  # the first server's links still are the only valid ones
    finally:
        first.close()
    renewed = open_study(store, None, ["alice", "bob"], new_links=["alice"], exclusive=True)  # free again
    renewed.close()
    assert token_hashes(store)["alice"] != before["alice"] and token_hashes(store)["bob"] == before["bob"]


def test_new_links_only_for_raters_served_now(tmp_path, capsys):
    pairs = write_pairs(tmp_path, 2)
    store = tmp_path / "r.sqlite"
    open_study(store, pairs, ["alice", "bob"]).close()
    before = token_hashes(store)
    cases = [(["--raters", "alice", "--new-links", "bob"],
              "error: --new-links: 'bob' is not in --raters, so its new link would not be printed and the old "
              "one would stop working; add bob to --raters"),
             (["--raters", "alice", "--new-links", ""],
              "error: --new-links: give at least one name, e.g. --new-links alice,bob,carol"),
             (["--raters", "alice", "--new-links", "al ice"], "error: --new-links: 'al ice' is not a valid name")]
    for extra, expected in cases:
        assert main_in_thread(["serve", "--port", "0", "--store", str(store), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith(expected) and err.count("\n") == 1, err
    assert token_hashes(store) == before


def test_serving_a_store_imports_no_scipy_and_handles_signals_from_the_first_line():
    code = ("import sys; import judge.human.cli as c, judge.human.server, judge.human.study, judge.human.app; "
            "print(sorted(m for m in ('numpy', 'scipy', 'evalkit', 'judge.table') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"
    main_source = (REPO / "judge" / "human" / "__main__.py").read_text()
    assert "run_cli(_main" in main_source and "from judge.human.cli import main" in main_source.split("def _main")[1]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_serve_starts_is_one_line_never_a_traceback(tmp_path, sig, code):
    pairs = write_pairs(tmp_path, 2)
    store = tmp_path / "r.sqlite"
    open_study(store, pairs, ["alice"]).close()
    argv = [sys.executable, "-m", "judge.human", "serve", "--port", "0", "--store", str(store), "--raters", "alice",
            "--pairs", pairs[0], "--pairs", pairs[1]]  # --pairs: evalkit, numpy and scipy are imported too
    for delay in (0.05, 0.08, 0.1, 0.13, 0.2, 0.3, 0.5, 0.8, 1.2):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        if (proc.returncode == -sig and err == "") or "Fatal Python error: init_import_site" in err:
            continue  # the signal came while the interpreter itself started, before the first line of ours
        assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("interrupted; "), (delay, err)
        # -SIGINT, rarely: after the line, CPython itself ends by SIGINT (a shell reports 130 for it too); seen
        # only when the Ctrl-C interrupted the import of numpy or scipy
        assert proc.returncode in ((code, -sig) if sig == signal.SIGINT else (code,)), (delay, err)


def test_export_refuses_deep_json_non_finite_scores_and_a_huge_bootstrap(tmp_path, capsys):
    store = tmp_path / "r.sqlite"
    open_study(store, write_pairs(tmp_path, 2), ["alice"]).close()
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    good = {"id": "RECID-0000", "model": "m", "status": "ok", "accuracy": 3, "comprehensiveness": 3,
            "helpfulness": 3, "relevance": 3}
    nan = tmp_path / "nan.jsonl"
    nan.write_text(json.dumps(good) + "\n" + json.dumps({**good, "model": "n", "helpfulness": float("nan")}) + "\n")
    inf = tmp_path / "inf.jsonl"
    inf.write_text(json.dumps({**good, "relevance": float("inf")}) + "\n")
    out = tmp_path / "out"
    cases = [(["--judgments", str(deep)], f"error: --judgments: {deep}:1: invalid JSON (nested too deeply)"),
             (["--scores", str(deep)], f"error: --scores: {deep}:1: invalid JSON (nested too deeply)"),
             (["--judgments", str(nan)], f"error: --judgments: {nan}:2: field 'helpfulness' is nan, not a finite "
                                         "score"),
             (["--judgments", str(inf)], f"error: --judgments: {inf}:1: field 'relevance' is inf, not a finite score"),
             (["--bootstrap", "1000000000"], "error: --bootstrap: must be from 1 to 10,000, got 1000000000")]
    for extra, expected in cases:
        assert main(["export", "--store", str(store), "--out", str(out), *extra]) == 2, extra
        assert capsys.readouterr().err == expected + "\n"
    assert not out.exists()


def test_serve_with_deep_json_pairs_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    code = main(["serve", "--port", "0", "--store", str(tmp_path / "r.sqlite"), "--raters", "alice",
                 "--pairs", str(deep)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {deep}:1: ") and err.count("\n") == 1, err
    assert not (tmp_path / "r.sqlite").exists()
