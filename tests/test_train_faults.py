"""Training under faults: every trial ends resumed bitwise equal to an uninterrupted run, or with one line
and a documented exit status; never a traceback, never lost or duplicated work.

Covered: SIGKILL at random moments and inside each phase of a checkpoint write (>= 20 trials), each kind
of damaged checkpoint file, a checkpoint folder without state.json, a torn metrics line, two runs on one
folder (and a lock left by a killed run), SIGINT and SIGTERM, a full disk (a small tmpfs), and bad values
refused before anything is written.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _train_util import REPO, adapter, metrics, train_args
from medlora_scripts import train

TRAIN = [sys.executable, str(REPO / "scripts" / "train.py")]
FAULTY = [sys.executable, str(REPO / "tests" / "_faulty.py")]  # a SIGKILL injected after a chosen call


def run_train(argv):
    return train.run(argv)


def cli(argv, timeout=180, kill_after: str | None = None) -> subprocess.CompletedProcess:
    """scripts/train.py in a process; `kill_after` ("MODULE:FUNC[:TEXT[:N]]") SIGKILLs it after that call."""
    command = TRAIN if kill_after is None else [*FAULTY, kill_after, "medlora_scripts.train"]
    return subprocess.run(command + argv, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=timeout)


def assert_equal_runs(reference: Path, run: Path) -> None:
    for name in ("adapter_last", "adapter"):
        a, b = adapter(reference, name), adapter(run, name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert metrics(reference) == metrics(run)
    assert (run / "DONE").is_file()


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("train:", "data:", "  "))
             and "it/s]" not in ln and "step/s" not in ln and "%|" not in ln]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def reference(tiny_train, tmp_path_factory):
    """The uninterrupted run every trial must end equal to (dropout on: the RNG state must resume too)."""
    return run_train(train_args(tiny_train, tmp_path_factory.mktemp("ref") / "run", "--lora-dropout", "0.1"))


def args(tiny_train, out, *extra):
    return train_args(tiny_train, out, "--lora-dropout", "0.1", *extra)


# ---- refused before anything is written -------------------------------------------------------------

@pytest.mark.parametrize("flag, value, words", [
    ("--batch-size", "0", "--batch-size: must be >= 1, got 0"),
    ("--lr", "-0.001", "--learning-rate: must be > 0, got -0.001"),
    ("--lr", "0", "--learning-rate: must be > 0, got 0.0"),
    ("--lr", "nan", "--learning-rate: must be a finite number, got nan"),
    ("--lora-dropout", "1.5", "--lora-dropout: must be in [0, 1), got 1.5"),
    ("--micro-batch-size", "3", "--batch-size: 4 is not a multiple of --micro-batch-size 3"),
    ("--cutoff-len", "1", "--cutoff-len: must be >= 2, got 1"),
    ("--min-lr-ratio", "2", "--min-lr-ratio: must be in [0, 1], got 2.0"),
    ("--val-size", "-1", "--val-size: must be >= 0, got -1"),
    ("--batch-size", "x", "argument --batch-size: invalid int value: 'x'"),
])
def test_bad_values_are_refused_before_anything_is_written(tiny_train, tmp_path, capsys, flag, value, words):
    out = tmp_path / "run"
    assert train.main(args(tiny_train, out, flag, value)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {words}"] or (len(err) == 1 and words in err[0]), err
    assert not out.exists()  # not even the folder
    assert train.main(args(tiny_train, out, "--max-steps", "1")) == 0  # the corrected command is not refused


def test_other_data_on_the_default_base_names_the_data_and_what_to_add(tmp_path, capsys):
    out = tmp_path / "run"
    assert train.main(["--data", str(tmp_path / "mine.jsonl"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --data {tmp_path / 'mine.jsonl'}: the default base"), err
    assert "give --base FOLDER_OR_ID with --data" in err[0]
    assert not out.exists()


# ---- damaged checkpoints ---------------------------------------------------------------------------

DAMAGE = ["optimizer.safetensors", "optimizer.json", "rng.safetensors", "rng.json", "state.json",
          "adapter/adapter_model.safetensors", "adapter/adapter_config.json"]


@pytest.mark.parametrize("name", [DAMAGE[0], *[pytest.param(n, marks=pytest.mark.slow) for n in DAMAGE[1:]]])
def test_damaged_newest_checkpoint_falls_back_to_the_intact_one(tiny_train, reference, tmp_path, capsys, name):
    out = run_train(args(tiny_train, tmp_path / "run", "--stop-after-steps", "4"))
    newest = out / "checkpoints" / "step_00000004"
    f = newest / name
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2] + b"\x00garbage")
    capsys.readouterr()
    assert run_train(["--resume", "--out", str(out)]) == out
    err = capsys.readouterr().err
    assert f"warning: skipping checkpoint {newest}:" in err and "resuming from" in err and "step_00000002" in err
    assert_equal_runs(reference, out)


def test_folder_without_state_json_and_half_written_tmp_are_ignored(tiny_train, reference, tmp_path, capsys):
    out = run_train(args(tiny_train, tmp_path / "run", "--stop-after-steps", "2"))
    incomplete = out / "checkpoints" / "step_00000004"  # a crash before state.json: the folder is incomplete
    shutil.copytree(out / "checkpoints" / "step_00000002", incomplete)
    (incomplete / "state.json").unlink()
    tmp = out / "checkpoints" / ".step_00000006.tmp"  # a crash mid-write of a later one
    tmp.mkdir()
    (tmp / "optimizer.json").write_text("{")
    assert run_train(["--resume", "--out", str(out)]) == out  # saves step 4 over the incomplete folder
    assert_equal_runs(reference, out)
    assert "no state.json (incomplete)" in capsys.readouterr().err


def test_torn_metrics_line_does_not_stop_resume(tiny_train, reference, tmp_path):
    out = run_train(args(tiny_train, tmp_path / "run", "--stop-after-steps", "3"))
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"type": "train", "step": 4, "lo')
    run_train(["--resume", "--out", str(out)])
    assert_equal_runs(reference, out)


# ---- processes: kills, locks, signals -------------------------------------------------------------

# SIGKILL inside the write of checkpoint 4, after each of its phases (the function that ends the phase).
PHASES = {"adapter": "lora:save_adapter:.step_00000004.tmp", "optimizer": "lora.finetune.checkpoint:save_file:"
          ".step_00000004.tmp/optimizer", "rng": "lora.finetune.checkpoint:save_file:.step_00000004.tmp/rng",
          "state": "lora.finetune.checkpoint:write_json_atomic:.step_00000004.tmp/state.json",
          "renamed": "lora.finetune.checkpoint:write_folder_atomic:step_00000004",
          "pruned": "lora.finetune.checkpoint:save_checkpoint::2"}


@pytest.mark.slow
def test_checkpoint_kills_at_every_phase_then_resume_is_bitwise_equal(tiny_train, reference, tmp_path):
    """SIGKILL inside the write of checkpoint 4, after each of its phases: the rerun resumes and ends equal."""
    for phase, where in PHASES.items():
        out = tmp_path / phase
        killed = cli(args(tiny_train, out), kill_after=where)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        resumed = cli(["--resume", "--out", str(out)])
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert "Traceback" not in resumed.stderr
        assert_equal_runs(reference, out)


@pytest.mark.slow
def test_random_sigkills_twenty_trials(tiny_train, reference, tmp_path):
    """20 trials: SIGKILL after a random delay, then --resume (or --force when no checkpoint was reached, as
    the refusal line says): every trial ends bitwise equal to the uninterrupted run."""
    rng = random.Random(1234)
    outcomes = []
    for trial in range(20):
        out = tmp_path / f"t{trial}"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen(TRAIN + args(tiny_train, out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.5, 4.0))
        proc.kill()
        proc.communicate()
        again = cli(["--resume", "--out", str(out)])
        if again.returncode == 2:  # killed before the run wrote its config: one line says what to do
            line = one_line(again)
            assert ("nothing to resume" in line and "--force" in line) or ("not a folder" in line), line
            again = cli(args(tiny_train, out, "--force") if out.exists() else args(tiny_train, out))
        assert again.returncode == 0, again.stderr[-3000:]
        assert "Traceback" not in again.stderr
        assert_equal_runs(reference, out)
        outcomes.append(proc.returncode)
    assert len(outcomes) == 20


def _wait_for(path: Path, pred, timeout: float = 60.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and pred(path):
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear")


@pytest.mark.slow
def test_two_runs_on_one_folder_and_a_stale_lock(tiny_train, tmp_path):
    out = tmp_path / "run"
    long = args(tiny_train, out, "--max-steps", "300", "--eval-steps", "100", "--save-steps", "20")
    first = subprocess.Popen(TRAIN + long, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    _wait_for(out / "metrics.jsonl", lambda p: p.stat().st_size > 0)
    second = cli(["--resume", "--out", str(out)])
    assert second.returncode == 2 and "another training run is working in this folder" in one_line(second)
    third = cli(long + ["--force"])
    assert third.returncode == 2 and "another training run is working in this folder" in one_line(third)
    plain = cli(long)  # the same command again: the busy folder is named first, not "already holds results"
    assert plain.returncode == 2 and "another training run is working in this folder" in one_line(plain)
    first.kill()  # a lock left by a killed run does not block the next one
    first.communicate()
    resumed = cli(["--resume", "--out", str(out)], timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = metrics(out)
    steps = [r["step"] for r in rows if r["type"] == "train"]
    assert steps == list(range(1, 301))  # no row lost or written twice


@pytest.mark.slow
@pytest.mark.parametrize("sig, status, name", [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_sigint_and_sigterm_save_a_checkpoint_and_say_so(tiny_train, tmp_path, sig, status, name):
    long = ["--max-steps", "200", "--eval-steps", "100", "--save-steps", "100"]
    ref = run_train(args(tiny_train, tmp_path / "ref", *long))
    out = tmp_path / "run"
    proc = subprocess.Popen(TRAIN + args(tiny_train, out, *long), env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(out / "metrics.jsonl", lambda p: p.read_text().count('"train"') >= 3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith(("interrupted", "error", "Traceback"))]
    assert lines == [f"interrupted ({name}); rerun with --resume to continue from the last checkpoint"], err[-2000:]
    step = max(int(p.name[5:]) for p in (out / "checkpoints").glob("step_*"))
    assert 3 <= step < 200 and not (out / "DONE").exists()
    resumed = cli(["--resume", "--out", str(out)], timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_equal_runs(ref, out)


# ---- a full disk ----------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full-disk test needs root to mount a small tmpfs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_disk_full_is_one_line_then_resume_is_bitwise_equal(tiny_train, reference, tmp_path, small_disk):
    probe = run_train(args(tiny_train, tmp_path / "probe", "--stop-after-steps", "2"))
    used = sum(p.stat().st_size for p in probe.rglob("*") if p.is_file())
    filler = small_disk / "filler"
    free = shutil.disk_usage(small_disk).free
    filler.write_bytes(b"\0" * max(0, free - used - 64 * 1024))  # room for the start, not for the whole run
    out = small_disk / "run"
    full = cli(args(tiny_train, out))
    assert full.returncode == 1, full.stderr[-2000:]
    line = one_line(full)
    assert line.startswith("error: ") and ("No space left on device" in line or "cannot write checkpoint" in line)
    assert "--resume" in line
    filler.unlink()
    again = cli(["--resume", "--out", str(out)])
    if again.returncode == 2:  # the disk filled before the first checkpoint: start over, as the line says
        again = cli(args(tiny_train, out, "--force"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert_equal_runs(reference, out)
    assert not list(out.rglob(".*.tmp"))  # no hidden partial file left behind
