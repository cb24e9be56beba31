"""When to retry a request and how long to wait: server hints first, else capped exponential backoff."""
from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({408, 409, 429})  # plus every 5xx, see `is_retryable_status`
MAX_RETRY_AFTER = 120.0  # seconds; a longer server hint is capped to this
INITIAL_BACKOFF = 0.5  # seconds, doubled per retry (as the OpenAI Python SDK does)
MAX_BACKOFF = 8.0  # seconds, cap of the exponential backoff


def is_retryable_status(status: int) -> bool:
    """408, 409, 429 and 5xx are worth another try; other 4xx are the caller's fault."""
    return status in RETRY_STATUSES or status >= 500


def retry_after_seconds(headers, now: float | None = None) -> float | None:
    """Server-requested wait from `retry-after-ms`, else `retry-after` (seconds or HTTP date).

    Args:
        headers: a case-insensitive mapping (httpx.Headers) of the response.
        now: current Unix time for HTTP dates (injectable for tests); `time.time()` by default.

    Returns:
        The wait in seconds capped at `MAX_RETRY_AFTER`, or None when no usable hint is present
        (missing, unparsable or negative values fall back to backoff).
    """
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            seconds = float(value) / 1000.0
        except ValueError:
            seconds = None
        if seconds is not None and seconds >= 0 and seconds == seconds:
            return min(seconds, MAX_RETRY_AFTER)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)  # e.g. "Wed, 21 Oct 2015 07:28:00 GMT" (RFC 9110)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def backoff_seconds(retry: int, rng: random.Random) -> float:
    """Exponential backoff with jitter for the `retry`-th retry (1-based): at most 8 s.

    0.5 s * 2**(retry-1), capped at 8 s, times a jitter factor in (0.75, 1] so that clients that
    failed together do not retry together.
    """
    base = min(INITIAL_BACKOFF * 2.0 ** (retry - 1), MAX_BACKOFF)
    return base * (1.0 - 0.25 * rng.random())


def is_quota_error(body: str) -> bool:
    """A 429 that says the quota or credit is exhausted (OpenAI code `insufficient_quota`)."""
    text = body.lower()
    return "insufficient_quota" in text or "exceeded your current quota" in text


def mentions_response_format(body: str) -> bool:
    """A 400/422 that rejects the `response_format` field (the client then tries a simpler one)."""
    text = body.lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object", "response format"))
