"""`evalkit score` under faults: bad bytes, an unusable --out, a full disk, signals, non-finite beta, huge lines."""
from __future__ import annotations

import errno
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import evalkit
from conftest import fill_disk
from evalkit.cli import main
from evalkit.rouge import lcs_length, rouge_scores

REPO = Path(__file__).resolve().parents[1]
ROUGE = importlib.import_module("evalkit.rouge")  # `evalkit.rouge` is the function the package exports
RECORDS = importlib.import_module("evalkit.records")
FAST = ["--bootstrap", "200", "--permutations", "200", "--quiet", "--no-figures"]
WORDS = ("fever cough pain chest the a of and take rest fluids doctor test blood pressure headache nausea "
         "infection antibiotic scan follow up weeks days treatment symptoms may could should your you").split()


def pairs(path: Path, model: str, n: int = 12, words: int = 30, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            ref_rng = random.Random(i)  # the same references in every file
            ref = " ".join(ref_rng.choice(WORDS) for _ in range(words))
            resp = " ".join(rng.choice(WORDS) for _ in range(words))
            f.write(json.dumps({"id": f"q{i}", "model": model, "prompt": f"question {i}", "reference": ref,
                                "response": resp, "finish_reason": "stop"}) + "\n")
    return path


def cli(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evalkit", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def test_non_utf8_pairs_file_is_one_line_with_its_line_and_byte(tmp_path):
    good = pairs(tmp_path / "a.jsonl", "a", n=3)
    bad = tmp_path / "b.jsonl"
    lines = pairs(tmp_path / "b0.jsonl", "b", n=3).read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"question 1", b"question \xff\xfe 1")
    bad.write_bytes(b"\n".join(lines))
    proc = cli("score", "--pairs", str(good), "--pairs", str(bad), "--out", str(tmp_path / "out"), *FAST)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    column = lines[1].index(b"\xff") + 1
    assert proc.stderr == (f"error: {bad}:2: not UTF-8 text (byte 0xff at column {column}); pairs files must be "
                           "UTF-8 JSONL\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("where, problem", [
    ("file", "exists and is not a folder"),
    ("under_file", "cannot be created: {base}/file is not a folder"),
])
def test_out_that_cannot_be_created_is_refused_before_scoring(tmp_path, where, problem):
    a = pairs(tmp_path / "a.jsonl", "a")
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" if where == "file" else tmp_path / "file" / "sub" / "out"
    proc = cli("score", "--pairs", str(a), "--out", str(out), *FAST)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == f"error: --out {out}: {problem.format(base=tmp_path)}\n"
    assert (tmp_path / "file").read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: a read-only folder does not stop it")
def test_out_in_a_read_only_folder_is_refused(tmp_path):
    a = pairs(tmp_path / "a.jsonl", "a")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        proc = cli("score", "--pairs", str(a), "--out", str(locked / "out"), *FAST)
    finally:
        locked.chmod(0o700)
    assert proc.returncode == 2 and proc.stderr == (f"error: --out {locked / 'out'}: cannot be created: no permission "
                                                    f"to write in {locked}\n")


@pytest.mark.parametrize("beta", ["nan", "inf", "-inf", "0", "-1"])
def test_rouge_beta_must_be_finite_and_positive(tmp_path, capsys, beta):
    a = pairs(tmp_path / "a.jsonl", "a")
    assert main(["score", "--pairs", str(a), "--out", str(tmp_path / "out"), f"--rouge-beta={beta}", *FAST]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --rouge-beta: must be a finite number > 0, got {float(beta)}\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("beta", [float("nan"), float("inf"), 0.0, -2.0])
def test_config_refuses_non_finite_beta_instead_of_zero_or_nan(beta):
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        evalkit.ScoreConfig(rouge_beta=beta)


@pytest.mark.slow
def test_full_disk_simulated_leaves_no_temp_file_and_keeps_old_results(tmp_path, monkeypatch, capsys):
    """fsync fails with ENOSPC (as on a full disk with delayed allocation) for files in --out."""
    a, b = pairs(tmp_path / "a.jsonl", "a"), pairs(tmp_path / "b.jsonl", "b", seed=1)
    out = tmp_path / "out"
    args = ["score", "--pairs", str(a), "--pairs", str(b), "--out", str(out), *FAST]
    assert main(args) == 0
    before = snapshot(out)
    real_fsync = os.fsync
    calls = []

    def full_disk(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(out)):
            calls.append(fd)
            if len(calls) == 3:  # the first two result files fit, the third does not
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    capsys.readouterr()
    assert main([*args, "--force", "--seed", "3"]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: {out / 'exclusions.json'}: cannot write (No space left on device); the results in {out} "
                   "were left as they were\n")
    assert snapshot(out) == before  # no hidden temp file, no result replaced
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main([*args, "--force", "--seed", "3"]) == 0
    assert json.loads((out / "table1.json").read_text())["settings"]["seed"] == 3


def test_first_run_on_a_full_disk_removes_the_folder_it_made(tmp_path, monkeypatch, capsys):
    a = pairs(tmp_path / "a.jsonl", "a")
    out = tmp_path / "new" / "out"

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["score", "--pairs", str(a), "--out", str(out), *FAST]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_full_disk_for_real_on_a_tiny_tmpfs(tmp_path, tiny_tmpfs):
    disk = tiny_tmpfs("256k")
    a, b = pairs(tmp_path / "a.jsonl", "a", n=40), pairs(tmp_path / "b.jsonl", "b", n=40, seed=1)
    out = disk / "out"
    args = ["score", "--pairs", str(a), "--pairs", str(b), "--out", str(out), *FAST]
    assert cli(*args).returncode == 0
    before = snapshot(out)
    filler = fill_disk(disk)
    proc = cli(*args, "--force", "--seed", "5")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {out}/") and "No space left on device" in proc.stderr
    assert snapshot(out) == before  # old results intact, no hidden partial file
    filler.unlink()
    proc = cli(*args, "--force", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "table1.json").read_text())["settings"]["seed"] == 5
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


SIGNAL_RUN = textwrap.dedent("""
    import sys
    from evalkit.cli import main
    print("ready", flush=True)
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_while_scoring_exits_with_one_line_and_writes_nothing(tmp_path, sig, code):
    a = pairs(tmp_path / "a.jsonl", "a", n=400, words=1500)
    b = pairs(tmp_path / "b.jsonl", "b", n=400, words=1500, seed=1)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", SIGNAL_RUN, "score", "--pairs", str(a), "--pairs", str(b),
                             "--out", str(out), *FAST], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "ready\n"
    time.sleep(1.5)  # reading done, scoring 800 long pairs under way
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err == "interrupted; no result file was written or changed (rerun the same command)\n"
    assert not out.exists()


@pytest.mark.slow
def test_lcs_of_long_sequences_uses_the_short_side_and_stays_exact(monkeypatch):
    rng = random.Random(1)
    for n, m in [(5000, 40), (40, 6000), (4097, 4096), (4500, 300)]:
        a = [rng.choice("abcdefg") for _ in range(n)]
        b = [rng.choice("abcdefgh") for _ in range(m)]
        fast = lcs_length(a, b)  # lcs_length_bits, the vector on the shorter side past LONG_SIDE tokens
        assert fast == lcs_length(b, a)
        with monkeypatch.context() as patch:
            patch.setattr(ROUGE, "DP_CELLS", float("inf"))  # the textbook table itself
            assert fast == lcs_length(b, a)


def test_long_response_equals_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    rng = random.Random(2)
    ref = " ".join(rng.choice(WORDS) for _ in range(80))
    hyp = " ".join(rng.choice(WORDS) for _ in range(6000))  # above the 4096-token switch of lcs_length
    theirs = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"]).score(ref, hyp)
    ours = rouge_scores(hyp, ref)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert tuple(ours[key]) == pytest.approx(tuple(theirs[key]), abs=1e-15), key


def test_too_long_pair_is_excluded_with_the_stated_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(ROUGE, "LCS_CELL_LIMIT", 500)  # 30 x 30 words = 900 cells > 500
    monkeypatch.setattr(RECORDS, "LCS_CELL_LIMIT", 500)
    a = pairs(tmp_path / "a.jsonl", "a", n=4, words=10)
    lines = a.read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "response": " ".join(["pain"] * 30), "reference": " ".join(["x"] * 30)})
    a.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["score", "--pairs", str(a), "--out", str(out), *FAST]) == 0
    ex = json.loads((out / "exclusions.json").read_text())
    assert ex["excluded_ids"] == ["q2"] and ex["counts"]["too_long"] == 1
    assert ex["exclusions"][0]["reason"] == "too_long" and ex["exclusions"][0]["line"] == 3
    assert "5e+02" in ex["too_long_rule"]
    md = (out / "table1.md").read_text()
    assert "1 too_long" in md and "too_long: response tokens x reference tokens > 5e+02" in md


@pytest.mark.slow
def test_a_20_mb_response_line_is_scored_in_reasonable_time(tmp_path):
    rng = random.Random(3)
    a = pairs(tmp_path / "a.jsonl", "a", n=6)
    b = pairs(tmp_path / "b.jsonl", "b", n=6, seed=1)
    lines = b.read_text().splitlines()
    words, size = [], 0
    while size < 20_000_000:
        w = rng.choice(WORDS)
        words.append(w)
        size += len(w) + 1
    lines[3] = json.dumps({**json.loads(lines[3]), "response": " ".join(words)})
    b.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    start = time.perf_counter()
    proc = cli("score", "--pairs", str(a), "--pairs", str(b), "--out", str(out), *FAST, timeout=280)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    big = next(r for r in rows if r["id"] == "q3" and r["model"] == "b")
    assert 0 < big["rougeL"] < 0.01 and 0 < big["bleu"] < 0.01  # scored, not excluded
    print(f"20 MB line scored in {time.perf_counter() - start:.1f} s")
