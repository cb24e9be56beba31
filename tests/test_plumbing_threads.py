"""The CPU thread policy (plumbing/threads.py): the arithmetic on /proc/stat samples, the user's settings
winning, and a busy machine switching OpenMP to passive waiting before torch loads."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from plumbing import threads

BUSY = "import time\nend = time.time() + 30\nwhile time.time() < end:\n    pass\n"


def test_free_cores_subtracts_this_process_and_keeps_one(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    # (machine busy CPU-seconds, this process's CPU-seconds, wall seconds)
    assert threads.free_cores((0.0, 0.0, 0.0), (2.0, 2.0, 1.0)) == 4  # all the busy time was ours
    assert threads.free_cores((0.0, 0.0, 0.0), (3.0, 1.0, 1.0)) == 2  # others kept 2 cores busy
    assert threads.free_cores((0.0, 0.0, 0.0), (9.0, 0.0, 1.0)) == 1  # never fewer than one


def test_explicit_counts_win(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert threads.ThreadPolicy(requested=1).start() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert threads.ThreadPolicy().start() == 1
    finally:
        torch.set_num_threads(before)


def test_user_wait_policy_and_an_imported_torch_are_left_alone(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert threads.prepare_openmp() == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert "torch" in sys.modules and threads.prepare_openmp() == ""  # too late to change OpenMP here


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the policy reads /proc/stat (Linux)")
def test_a_busy_machine_gets_passive_waiting_and_one_thread_per_core():
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
        code = ("import time; time.sleep(0.3)\nfrom plumbing import threads\np = threads.prepare_openmp()\n"
                "import torch\nprint(p, threads.ThreadPolicy().start(), threads.usable_cores())")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    policy, n, cores = out.stdout.split()
    assert policy == "PASSIVE" and n == cores, out.stderr


def test_start_reuses_the_startup_probe_once_while_it_is_fresh(monkeypatch):
    import time

    import torch

    before = torch.get_num_threads()
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    calls = []
    monkeypatch.setattr(threads, "probe", lambda seconds=0.2: calls.append(seconds) or
                        ((0.0, 0.0, time.monotonic() - 1), (3.0, 0.0, time.monotonic())))  # others: 3 cores
    now = time.monotonic()
    try:
        monkeypatch.setattr(threads, "_STARTUP", ((0.0, 0.0, now - 1), (1.0, 0.0, now)))  # others: 1 core
        assert threads.ThreadPolicy().start() == 3 and calls == []  # prepare_openmp's probe, no new one
        assert threads.ThreadPolicy().start() == 1 and len(calls) == 1  # used once: the next start probes
        monkeypatch.setattr(threads, "_STARTUP", ((0.0, 0.0, now - 61), (1.0, 0.0, now - 60)))
        assert threads.ThreadPolicy().start() == 1 and len(calls) == 2  # a stale probe is not trusted
    finally:
        torch.set_num_threads(before)
