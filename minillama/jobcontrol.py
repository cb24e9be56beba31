"""How every command line of the project behaves as a process: exit codes, signals, an exclusive lock.

It lives in `minillama`, the package with no dependency inside the project, so that `evalkit`, `judge`,
`lora` and the scripts can all import it without a cycle; it imports neither torch nor numpy
(`minillama/__init__.py` is lazy).

Exit codes (docs/cli.md, "Exit codes"): 0 success; 1 failure while running (network, server, disk
full, a job whose every item failed); 2 bad input or usage (argparse's own code; also an output folder
that another live run holds); 130 on SIGINT; 143 on SIGTERM (128 + the signal number, as a shell
reports a killed child).

    with sigterm_raises():            # SIGTERM -> Interrupted(SIGTERM), so `finally` blocks run
        try:
            ...
        except (KeyboardInterrupt, Interrupted) as exc:
            return exit_code(exc)     # 130 / 143

    with exclusive_lock(out / "journal.lock", "judge run"):   # a second run gets a LockedError (exit 2)
        ...
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Callable, Iterator, TextIO

EXIT_OK = 0
EXIT_FAILURE = 1  # failure while running: network, server, disk full, every item failed
EXIT_USAGE = 2  # bad input or usage (argparse's own code), an output folder another run is using
EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143


class Interrupted(BaseException):
    """A SIGINT (exit status 130) or SIGTERM (143) that stopped the work; a BaseException, like
    KeyboardInterrupt, so that `except Exception` does not swallow it and `finally` blocks run.

    `sigterm_raises` raises it for SIGTERM (Ctrl-C stays Python's KeyboardInterrupt, which asyncio
    handles itself); `lora.finetune.signals.StopFlag` raises it for both once a checkpoint is saved.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class CommandError(Exception):
    """A failure a command reports as one line, `error: <message>`, then exits with `exit_code`.

    The base of every package's error class (`MiniLlamaError`, `LoraError`, `TrainError`,
    `EvalkitError`, `JudgeError`, `PipelineError`), so the convention lives in one place: 2 (bad input
    or usage) unless the class or the raise says otherwise, e.g. `exit_code=1` for a full disk.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str = "", exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class LockedError(OSError):
    """The lock file is held by another live process; the message says which file and which pid.

    Attributes:
        exit_code: 2, as training and the pipeline refuse a busy folder: the command asks for a folder
            that is in use (usage), and the same command succeeds once the other run ends.
    """

    exit_code = EXIT_USAGE


def exit_code(exc: BaseException) -> int | None:
    """The exit status for `exc`: 130 for KeyboardInterrupt, 128 + signal for `Interrupted`, the `exit_code`
    attribute of the project's error classes (2 for bad input unless the error says otherwise), 1 for
    any other OSError (disk full, permission denied while writing), None for anything else (a bug:
    let its traceback show)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_SIGINT
    if isinstance(exc, Interrupted):
        return exc.exit_status
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    if isinstance(exc, OSError):
        return EXIT_FAILURE
    return None


def one_line(exc: BaseException | str) -> str:
    """The message of `exc` folded onto one line (runs of whitespace, newlines included, become one space)."""
    return " ".join(str(exc).split())


def error_line(exc: BaseException) -> str:
    """The one line after `error: `: an OSError as `<file>: <reason>` (no `[Errno 28]`), else its message."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, LockedError):
        where = f"{exc.filename}: " if exc.filename else ""
        return one_line(f"{where}{exc.strerror}" + (f" (-> {exc.filename2})" if exc.filename2 else ""))
    return one_line(exc)


def os_problem(exc: OSError) -> str:
    """`"No space left on device"` from an OSError (its strerror, else its text), never its traceback."""
    return exc.strerror or one_line(exc) or type(exc).__name__


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises `Interrupted(SIGTERM)` in the main thread; the old handler comes back after.

    Outside the main thread (where Python cannot set handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def run_cli(body: Callable[[], int | None], handled: tuple[type[BaseException], ...] = (),
            interrupted: str | Callable[[], str] = "interrupted", err: TextIO | None = None) -> int:
    """Run a command's `body` under the project's exit-code convention; returns the exit status.

    Args:
        body: the command; returns its exit status (None means 0).
        handled: exception classes that are reported as `error: <one line>` (their `exit_code`
            attribute, else 1 for OSError); anything else propagates with its traceback (a bug).
        interrupted: the line printed on SIGINT / SIGTERM (or a function returning it, called then),
            e.g. "interrupted; rerun the same command to resume".
        err: where the lines go (default: sys.stderr at call time).
    """
    import sys

    err = err or sys.stderr
    with sigterm_raises():
        try:
            code = body()
            return EXIT_OK if code is None else code
        except (KeyboardInterrupt, Interrupted) as exc:
            line = interrupted() if callable(interrupted) else interrupted
            print(line, file=err, flush=True)
            return exit_code(exc)  # type: ignore[return-value]
        except handled as exc:
            print(f"error: {error_line(exc)}", file=err, flush=True)
            code = exit_code(exc)
            return EXIT_FAILURE if code is None else code


def folder_problem(folder: str | os.PathLike) -> str | None:
    """Why an output folder cannot be used, or None: checked before any work, nothing created.

    A folder that exists must be a writable folder; one that does not must be creatable (its nearest
    existing parent is a writable folder). Root passes permission checks, but not a read-only mount.
    """
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            return "exists and is not a folder"
        if not os.access(folder, os.W_OK | os.X_OK):
            return "cannot write into this folder (permission denied)"
        return None
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: no permission to write in {parent}"
    return None


@contextlib.contextmanager
def sigterm_cancels(task) -> Iterator[list]:
    """For asyncio code: within the block, SIGTERM cancels `task` (through the event loop, so never in
    the middle of a callback, as asyncio does for Ctrl-C); yields a list that is non-empty once the
    signal came, so the caller can turn the cancellation into `Interrupted`. The previous Python handler
    is restored after. Outside the main thread the block runs unchanged.

        with sigterm_cancels(asyncio.current_task()) as received:
            try:
                await work()
            except asyncio.CancelledError:
                if received:
                    raise Interrupted(signal.SIGTERM) from None
                raise
    """
    import asyncio

    received: list[int] = []
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)

    def on_signal() -> None:
        received.append(signal.SIGTERM)
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_signal)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no Unix signals
        yield received
        return
    try:
        yield received
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


class FileLock:
    """An exclusive `flock` on `path` (created with its folder if missing), held from `acquire` to `release`.

    The kernel releases it when the holder's process dies, however it dies (SIGKILL included), so a
    lock left by a killed run never blocks the next one. The file holds the holder's pid, only for
    messages; it is not removed afterwards (removing it would race with a new holder). On systems
    without `fcntl` (Windows) `acquire` always succeeds: there is no lock.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another live process (or another FileLock here) holds it.

        Raises:
            OSError: the lock file cannot be created (a read-only folder, a full disk for a new inode).
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            pass  # the pid is only for messages; a full disk must not stop a run that holds the lock
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the process that holds (or last held) the lock, or "unknown"."""
        try:
            return self.path.read_text(encoding="ascii", errors="replace").strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        """Give the lock back (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str = "another run") -> Iterator[Path]:
    """Hold a `FileLock` on `path` for the block.

    Raises:
        LockedError: another live process holds the lock: `"<path>: <what> (pid N) is using it; ..."`.
        OSError: the lock file cannot be created (e.g. a read-only folder).
    """
    lock = FileLock(path)
    if not lock.acquire():
        raise LockedError(f"{lock.path}: {what} (pid {lock.holder()}) is using this folder; wait for it to end, "
                          "or use another output folder")
    try:
        yield lock.path
    finally:
        lock.release()
