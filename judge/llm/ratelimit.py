"""Bounded concurrency plus an optional requests-per-minute limit, for asyncio."""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable


class RateLimiter:
    """Spaces request starts at least `60 / rpm` seconds apart (a smooth requests-per-minute cap).

    Smooth spacing never sends a burst, so it stays within a provider's per-minute limit however
    the limit is windowed. `clock` and `sleep` are injectable so tests run without waiting.
    """

    def __init__(self, rpm: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.interval = 60.0 / rpm if rpm else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = None  # earliest start time of the next request
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until this request may start."""
        if not self.interval:
            return
        async with self._lock:
            now = self._clock()
            start = now if self._next is None else max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await self._sleep(start - now)


class Throttle:
    """`async with throttle:` holds one of `concurrency` slots and respects the rpm limit.

    Only the request itself holds a slot: backoff sleeps happen outside, so a request waiting to
    retry does not block the others.
    """

    def __init__(self, concurrency: int, rpm: float | None = None, **limiter_kwargs):
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self.limiter = RateLimiter(rpm, **limiter_kwargs)

    async def __aenter__(self) -> "Throttle":
        await self._slots.acquire()
        try:
            await self.limiter.acquire()
        except BaseException:
            self._slots.release()
            raise
        return self

    async def __aexit__(self, *exc) -> None:
        self._slots.release()
