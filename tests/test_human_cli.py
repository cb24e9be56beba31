"""`python -m judge.human serve|export` as a user runs them: links printed, signals, one-line errors and
exit codes (0 ok, 1 running failure, 2 bad input, 130 Ctrl-C, 143 SIGTERM), nothing written on bad input."""
from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from _human_util import write_pairs
from judge.human.cli import main

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
