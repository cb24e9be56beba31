"""Exit codes and the one error base of the project: a failure is one line and a documented exit status.

Exit codes (docs/cli.md, "Exit codes"): 0 success; 1 failure while running (network, server, disk full, a job
whose every item failed); 2 bad input or usage (argparse's own code; also an output folder that another live
run holds); 130 on SIGINT; 143 on SIGTERM (128 + the signal number, as a shell reports a killed child).

Every package's error class (`MiniLlamaError`, `LoraError`, `TrainError`, `EvalkitError`, `JudgeError`,
`PipelineError`) derives from `CommandError`, so a caller catches the base once:

    try:
        train(cfg)
    except CommandError as exc:
        print(f"error: {error_line(exc)}"); return exc.exit_code
"""
from __future__ import annotations

import errno
import signal

from plumbing.signals import Interrupted

EXIT_OK = 0
EXIT_FAILURE = 1  # failure while running: network, server, disk full, every item failed
EXIT_USAGE = 2  # bad input or usage (argparse's own code), an output folder another run is using
EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143


class CommandError(Exception):
    """A failure a command reports as one line, `error: <message>`, then exits with `exit_code`.

    2 (bad input or usage) unless the class or the raise says otherwise, e.g. `exit_code=1` for a full disk.
    Newlines in the message become spaces, so "one clear line" always holds.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str = "", exit_code: int | None = None):
        super().__init__(" ".join(str(message).split("\n")))
        if exit_code is not None:
            self.exit_code = exit_code


def exit_code(exc: BaseException) -> int | None:
    """The exit status for `exc`: 130 for KeyboardInterrupt, 128 + signal for `Interrupted`, the `exit_code`
    attribute of the project's error classes, 1 for any other OSError (disk full, permission denied while
    writing), None for anything else (a bug: let its traceback show)."""
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
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return one_line(f"{where}{exc.strerror}" + (f" (-> {exc.filename2})" if exc.filename2 else ""))
    return one_line(exc)


def os_problem(exc: OSError) -> str:
    """`"No space left on device"` from an OSError (its strerror, else its text), never its traceback."""
    return exc.strerror or one_line(exc) or type(exc).__name__


def is_disk_full(exc: BaseException) -> bool:
    """True for "no space left on device" and "disk quota exceeded"."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
