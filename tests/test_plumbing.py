"""`plumbing`: exit codes, SIGTERM as `Interrupted`, the exclusive lock (killed holders included)."""
from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from plumbing.command import run_cli
from plumbing.errors import EXIT_FAILURE, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE, exit_code, one_line
from plumbing.files import folder_problem
from plumbing.locks import FileLock, LockedError, exclusive_lock
from plumbing.signals import Interrupted

REPO = Path(__file__).resolve().parents[1]


class BadInput(Exception):
    exit_code = 2


def test_exit_codes_follow_the_convention():
    assert (EXIT_FAILURE, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM) == (1, 2, 130, 143)
    assert exit_code(KeyboardInterrupt()) == 130 and exit_code(Interrupted(signal.SIGTERM)) == 143
    assert exit_code(Interrupted(signal.SIGINT)) == 130 and str(Interrupted(signal.SIGTERM)) == "SIGTERM"
    assert exit_code(BadInput("x")) == 2
    assert exit_code(OSError(errno.ENOSPC, "No space left on device")) == 1
    assert exit_code(LockedError("held")) == 2  # a busy folder is refused like bad usage, as training does
    assert exit_code(ValueError("a bug")) is None  # not ours: its traceback must show
    assert issubclass(Interrupted, BaseException) and not issubclass(Interrupted, Exception)


def test_run_cli_prints_one_line_and_returns_the_code():
    err = io.StringIO()
    assert run_cli(lambda: None, err=err) == 0 and err.getvalue() == ""
    assert run_cli(lambda: 5, err=err) == 5

    def bad():
        raise BadInput("--flag: must be\n  positive")
    assert run_cli(bad, handled=(BadInput,), err=err) == 2
    assert err.getvalue() == "error: --flag: must be positive\n"

    def interrupted():
        raise KeyboardInterrupt
    err = io.StringIO()
    assert run_cli(interrupted, interrupted=lambda name: f"interrupted ({name}); rerun", err=err) == 130
    assert err.getvalue() == "interrupted (SIGINT); rerun\n"

    def disk_full():
        raise OSError(28, "No space left on device", "out/x.json")
    err = io.StringIO()
    assert run_cli(disk_full, handled=(OSError,), err=err, disk_full="; free space and rerun") == 1
    assert err.getvalue() == "error: out/x.json: No space left on device; free space and rerun\n"

    def bug():
        raise ZeroDivisionError("bug")
    with pytest.raises(ZeroDivisionError):  # not in `handled`: a bug keeps its traceback
        run_cli(bug, handled=(BadInput,), err=err)
    assert one_line("a\n b\tc ") == "a b c"


def test_sigterm_becomes_interrupted_finally_runs_and_handler_is_restored(tmp_path):
    """In a child: SIGTERM mid-work raises Interrupted, the `finally` block runs, the exit code is 143."""
    marker = tmp_path / "finally-ran"
    code = textwrap.dedent(f"""
        import os, signal, sys, time
        from plumbing.command import run_cli
        def body():
            try:
                print("ready", flush=True)
                time.sleep(30)
            finally:
                open({str(marker)!r}, "w").write("yes")
        before = signal.getsignal(signal.SIGTERM)
        rc = run_cli(body, interrupted="interrupted; rerun to resume")
        assert signal.getsignal(signal.SIGTERM) == before, "handler not restored"
        sys.exit(rc)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and err == "interrupted; rerun to resume\n"
    assert marker.read_text() == "yes"


def test_a_blocked_sigterm_is_delivered_and_a_swallowed_one_is_raised_again():
    """In a child started with SIGTERM blocked (a mask survives exec), a SIGTERM sent before `run_cli` waits; `run_cli`
    unblocks it, so it stops the command: one line, exit status 143. Then a SIGTERM that a bare `except:` swallows
    is raised again by the rating server's poll (`service_actions` -> `raise_if_interrupted`)."""
    blocked = textwrap.dedent("""
        import os, signal, sys
        from plumbing.command import run_cli
        os.kill(os.getpid(), signal.SIGTERM)  # blocked: pending
        assert signal.SIGTERM in signal.sigpending()
        sys.exit(run_cli(lambda: print("body ran", flush=True), interrupted="interrupted; rerun to resume"))
    """)
    swallowed = textwrap.dedent("""
        import os, signal, sys
        from judge.human.server import RatingServer
        from plumbing.command import run_cli
        from plumbing.signals import _RAISED
        server = RatingServer("127.0.0.1", 0)
        def body():
            server.service_actions()  # no signal yet: serves on
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except:  # noqa: E722 (what a library may do)
                print("swallowed", flush=True)
            server.service_actions()
            print("served on", flush=True)
        rc = run_cli(body, interrupted="interrupted; rerun to resume")
        server.server_close()
        assert not _RAISED, "the record outlived its block"
        sys.exit(rc)
    """)
    block = lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # noqa: E731
    for code, out in ((blocked, ""), (swallowed, "swallowed\n")):
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                              preexec_fn=block if code is blocked else None)
        assert (proc.returncode, proc.stdout, proc.stderr) == (143, out, "interrupted; rerun to resume\n")


HOLD = textwrap.dedent("""
    import sys, time
    from plumbing.locks import exclusive_lock
    with exclusive_lock(sys.argv[1], "test holder"):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_lock_refuses_a_second_holder_and_dies_with_a_killed_one(tmp_path):
    lock = tmp_path / "run.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(LockedError) as info:
            with exclusive_lock(lock, "another run"):
                pass
        assert str(info.value) == (f"{lock}: another run (pid {holder.pid}) is using this folder; wait for it to "
                                   "end, or use another output folder")
        assert exit_code(info.value) == 2
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs in the holder
        holder.wait(timeout=30)
    assert lock.exists()  # the file stays; the kernel dropped the lock with the process
    with exclusive_lock(lock, "another run"):
        assert lock.read_text() == f"{os.getpid()}\n"


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    lock = tmp_path / "x.lock"
    with exclusive_lock(lock):
        with pytest.raises(LockedError):
            with exclusive_lock(lock):
                pass
        assert FileLock(lock).acquire() is False  # the class API (lora.finetune's FolderLock) sees it too
    with exclusive_lock(lock):  # released on exit
        pass
    held = FileLock(tmp_path / "new" / "y.lock")
    assert held.acquire() and held.holder() == str(os.getpid())
    held.release()
    assert FileLock(tmp_path / "new" / "y.lock").acquire()


def test_folder_problem(tmp_path):
    (tmp_path / "file").write_text("x")
    assert folder_problem(tmp_path) is None
    assert folder_problem(tmp_path / "new" / "deeper") is None
    assert folder_problem(tmp_path / "file") == "exists and is not a folder"
    assert folder_problem(tmp_path / "file" / "sub") == f"cannot be created: {tmp_path / 'file'} is not a folder"
    assert not (tmp_path / "new").exists()  # nothing created


def test_sigterm_cancels_an_asyncio_task_and_restores_the_handler():
    """The asyncio variant: SIGTERM cancels the task through the loop; the caller turns it into Interrupted."""
    code = textwrap.dedent("""
        import asyncio, os, signal, sys
        from plumbing.signals import Interrupted, sigterm_cancels, sigterm_raises
        cleaned = []
        async def main():
            with sigterm_cancels(asyncio.current_task()) as received:
                try:
                    await asyncio.sleep(0.05)
                    os.kill(os.getpid(), signal.SIGTERM)
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    cleaned.append(1)
                    if received:
                        raise Interrupted(signal.SIGTERM) from None
                    raise
        with sigterm_raises():
            handler = signal.getsignal(signal.SIGTERM)
            try:
                asyncio.run(main())
            except Interrupted:
                assert cleaned == [1] and signal.getsignal(signal.SIGTERM) == handler
                sys.exit(143)
        sys.exit(3)
    """)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert time.perf_counter() - start < 20


def test_every_package_error_is_a_command_error_with_its_exit_code():
    from evalkit.errors import EvalkitError
    from pipeline.config import ConfigError, PipelineError
    from judge.errors import FatalJudgeError, JudgeError
    from lora.errors import LoraError
    from lora.finetune.config import RunFailed, TrainError
    from minillama.errors import MiniLlamaError
    from plumbing.errors import CommandError, exit_code

    bad_input = [EvalkitError("x"), ConfigError("x"), JudgeError("x"), LoraError("x"), TrainError("x"),
                 MiniLlamaError("x")]
    while_running = [PipelineError("x"), FatalJudgeError("x"), RunFailed("x"), EvalkitError("x", exit_code=1),
                     MiniLlamaError("x", exit_code=1)]
    assert all(isinstance(e, CommandError) for e in bad_input + while_running)
    assert [exit_code(e) for e in bad_input] == [2] * len(bad_input)
    assert [exit_code(e) for e in while_running] == [1] * len(while_running)
    assert isinstance(LoraError("x"), ValueError) and str(MiniLlamaError("a\nb")) == "a b"
