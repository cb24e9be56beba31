"""SIGINT and SIGTERM during a run: finish the current step, save a checkpoint, exit 130 / 143.

Outside the training loop a signal stops the program at once (`Interrupted`, a BaseException, so
`finally` blocks run and nothing half-written is kept). Inside it, `deferred()` only records the
signal; the loop asks `requested` after each optimiser step, saves a checkpoint and stops. A second
signal while one is pending stops at once.
"""
from __future__ import annotations

import contextlib
import signal


class Interrupted(BaseException):
    """A SIGINT (exit status 130) or SIGTERM (143) that stopped the run."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class StopFlag:
    """Installs handlers for SIGINT and SIGTERM while used as a context manager (main thread only)."""

    def __init__(self):
        self.requested: int = 0  # the pending signal number, 0 if none
        self._defer = False
        self._old: dict[int, object] = {}

    def _handle(self, signum, _frame):
        if self._defer and not self.requested:
            self.requested = signum
            return
        raise Interrupted(signum)

    def __enter__(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    @contextlib.contextmanager
    def deferred(self):
        """Within this block a (first) signal is recorded in `requested` instead of raised."""
        self._defer = True
        try:
            yield self
        finally:
            self._defer = False
