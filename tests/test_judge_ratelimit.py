"""Requests-per-minute spacing (fake clock) and the concurrency bound."""
import asyncio

import pytest

from judge.llm.ratelimit import RateLimiter, Throttle


def test_rpm_spaces_request_starts():
    now, waits = [100.0], []

    async def fake_sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    async def go():
        limiter = RateLimiter(rpm=120, clock=lambda: now[0], sleep=fake_sleep)  # one start per 0.5 s
        starts = []
        for _ in range(5):
            await limiter.acquire()
            starts.append(now[0])
        now[0] += 10.0  # idle for a while: no debt is carried over
        await limiter.acquire()
        starts.append(now[0])
        return starts

    starts = asyncio.run(go())
    assert starts[:5] == pytest.approx([100.0, 100.5, 101.0, 101.5, 102.0])
    assert starts[5] == pytest.approx(112.0) and waits == pytest.approx([0.5] * 4)


def test_rpm_off_never_waits():
    async def never(seconds):
        raise AssertionError("slept")

    asyncio.run(RateLimiter(None, sleep=never).acquire())


def test_throttle_bounds_concurrency():
    in_flight, peak = [0], [0]

    async def request(throttle):
        async with throttle:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            await asyncio.sleep(0.01)
            in_flight[0] -= 1

    async def go():
        throttle = Throttle(3)
        await asyncio.gather(*(request(throttle) for _ in range(20)))

    asyncio.run(go())
    assert peak[0] == 3


@pytest.mark.parametrize("flags, message", [(["--rpm", "0"], "--rpm: must be a positive number, got 0.0"),
                                            (["--concurrency", "0"], "--concurrency: must be at least 1, got 0")])
def test_bad_limits_rejected_where_they_enter(flags, message):
    """The limits are checked once, as flags (or config keys), not again by the limiter."""
    from judge.errors import JudgeError
    from judge.llm.cli import parse_judge_flags

    with pytest.raises(JudgeError, match=f"^{message}$"):
        parse_judge_flags(flags, "http://127.0.0.1:1/v1")
