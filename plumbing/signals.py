"""SIGINT and SIGTERM: the one exception for a signal that stops work, and the three ways to receive it.

- `sigterm_raises()`: within the block, SIGTERM raises `Interrupted(SIGTERM)` (Ctrl-C stays Python's
  KeyboardInterrupt), so `finally` blocks run and nothing half-written is kept.
- `sigterm_cancels(task)`: the same for asyncio code (the signal cancels the task through the event loop).
- `StopFlag`: a long loop (training) defers the first signal to the end of the current step, saves a
  checkpoint, then raises `Interrupted`; a second signal while one is pending stops at once.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Interrupted(BaseException):
    """A SIGINT (exit status 130) or SIGTERM (143) that stopped the work; a BaseException, like
    KeyboardInterrupt, so that `except Exception` does not swallow it and `finally` blocks run."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises `Interrupted(SIGTERM)` in the main thread; the old handler comes back after.

    Outside the main thread (where Python cannot set handlers) the block runs unchanged.
    """
    if not _main_thread():
        yield
        return

    def handler(signum, frame):
        _RAISED.append(signum)
        raise Interrupted(signum)

    _RAISED.clear()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        _RAISED.clear()


_RAISED: list[int] = []  # the SIGTERMs `sigterm_raises` turned into `Interrupted` in the current block


def unblock_sigterm() -> None:
    """Let SIGTERM in, in the main thread: one blocked since our parent started us (a signal mask survives exec)
    would otherwise wait forever. A pending one arrives at once."""
    if _main_thread():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def raise_if_interrupted() -> None:
    """Raise `Interrupted` again for a SIGTERM of the current `sigterm_raises` block that did not stop the work
    (library code with a bare `except:` swallowed it, e.g. while importing): a server calls this between polls."""
    if _RAISED and _main_thread():
        raise Interrupted(_RAISED[-1])


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


class StopFlag:
    """SIGINT and SIGTERM handlers while used as a context manager (main thread only; elsewhere a no-op).

    Outside `deferred()` a signal raises `Interrupted` at once; inside it the first signal is only recorded
    in `requested` (the loop asks after each optimiser step, saves a checkpoint and stops).
    """

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
        if _main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}

    @contextlib.contextmanager
    def deferred(self):
        """Within this block a (first) signal is recorded in `requested` instead of raised."""
        self._defer = True
        try:
            yield self
        finally:
            self._defer = False
