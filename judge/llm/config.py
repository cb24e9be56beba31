"""Judge configuration: endpoint, model, sampling parameters and limits, with a key that never prints."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from plumbing.flags import at_least, knob

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o"  # The paper says "GPT-4" without a version; pass --model to pin one.
DEFAULT_AZURE_API_VERSION = "2024-06-01"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
RESPONSE_FORMATS = ("auto", "json_schema", "json_object", "none")  # "auto": the three in this order
AT_LEAST_1 = (lambda v: v is None or v >= 1), "at least 1"  # the checks of the flags (plumbing.flags.check_fields)
POSITIVE = (lambda v: v is None or (math.isfinite(v) and v > 0)), "a positive number"


class Secret:
    """Holds an API key so that repr(), str(), f-strings, logs and tracebacks show only `***`."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the one place that needs it: the request header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # refuse pickling (multiprocessing, caches) rather than leak the key
        raise TypeError("a Secret cannot be pickled")


def redact(text: str, secret: Secret | None) -> str:
    """Replace every occurrence of the key in `text` (error bodies sometimes echo it) by `***`."""
    if secret and secret.reveal() and text:
        text = text.replace(secret.reveal(), "***")
    return text


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a judge base URL (not http(s), no host, a bad port), or None when it can."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a port such as ":abc" or ":99999")
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "is not an http:// or https:// URL (e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1)"
    if not parts.hostname:
        return "has no host name (e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1)"
    return None


def is_loopback(url: str) -> bool:
    """True when `url` points at this machine (local servers such as the stand-in need no key)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.")


@dataclass(frozen=True)
class JudgeConfig:
    """Everything that decides what is sent to the judge and how.

    `temperature`, `seed` and `max_tokens` enter the journal key (changing them judges again);
    the rest (endpoint, limits, timeouts) only change how requests travel. Each field but `api_key` is a
    flag of `python -m judge run` and a key of a pipeline config's `judge.config`, checked there
    (`plumbing.flags.check_fields`).

    Attributes:
        base_url: OpenAI-style base URL ending in `/v1` (or an Azure deployment URL).
        model: judge model name sent in the request body.
        api_key: the key as a `Secret`, or None for loopback servers.
        api_version: Azure `api-version` query parameter; set for Azure-style URLs.
        temperature: 0 by default, for repeatable judgments.
        seed: sent as the OpenAI `seed` parameter and used for the blind order.
        max_tokens: cap on the judge's answer length.
        timeout: seconds to wait for one answer (read timeout).
        connect_timeout: seconds to open a connection.
        concurrency: requests in flight at most.
        rpm: requests per minute at most (None: unlimited).
        max_retries: retries per request after the first attempt.
        response_format: "auto" (json_schema, then json_object, then none), or one of those fixed.
    """

    base_url: str = knob(DEFAULT_BASE_URL, f"default: $OPENAI_BASE_URL or {DEFAULT_BASE_URL}", env="OPENAI_BASE_URL",
                         check=(lambda v: url_problem(v) is None, "an http:// or https:// URL with a host"))
    model: str = knob(DEFAULT_MODEL, f"judge model (default: $JUDGE_MODEL or {DEFAULT_MODEL})", env="JUDGE_MODEL",
                      check=(lambda v: bool(v.strip()), "a model name"))
    api_key: Secret | None = field(default=None, repr=False, compare=False)
    api_version: str | None = knob(None, "Azure api-version (turns on Azure-style requests)", type=str)
    temperature: float = knob(0.0, "sampling temperature (default 0: repeatable judgments)",
                              check=(lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"))
    seed: int = knob(0, "request seed and blind order (default 0)", check=at_least(0))
    max_tokens: int = knob(400, "cap on the judge's answer (default 400)", check=AT_LEAST_1)
    timeout: float = knob(120.0, "seconds to wait for one answer", check=POSITIVE)
    connect_timeout: float = knob(10.0, "seconds to open a connection", check=POSITIVE)
    concurrency: int = knob(8, "requests in flight (default 8)", check=AT_LEAST_1)
    rpm: float | None = knob(None, "requests per minute at most (default: no limit)", type=float, check=POSITIVE)
    max_retries: int = knob(6, "retries per request (default 6)", check=at_least(0))
    response_format: str = knob("auto", "json_schema, json_object, none, or auto: the three in this order",
                                choices=RESPONSE_FORMATS)

    @property
    def is_azure(self) -> bool:
        """Azure-style endpoint: `api-key` header and `?api-version=` (see docs/judge.md)."""
        host = (urlsplit(self.base_url).hostname or "").lower()
        return self.api_version is not None or host.endswith(".azure.com")

    @property
    def endpoint(self) -> str:
        """Full chat-completions URL: `{base}/chat/completions` (`/v1` added to a bare host)."""
        base = self.base_url.rstrip("/")
        if not self.is_azure and urlsplit(base).path in ("", "/"):
            base += "/v1"
        return base + "/chat/completions"

    @property
    def params(self) -> dict:
        """Query parameters of each request (Azure's api-version only)."""
        if self.is_azure:
            return {"api-version": self.api_version or DEFAULT_AZURE_API_VERSION}
        return {}

    def headers(self) -> dict:
        """Request headers, including the key (only ever passed to httpx, never stored)."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            if self.is_azure:
                headers["api-key"] = self.api_key.reveal()
            else:
                headers["Authorization"] = "Bearer " + self.api_key.reveal()
        return headers

    @property
    def sampling(self) -> dict:
        """The sampling parameters that enter both the request body and the journal key."""
        return {"temperature": self.temperature, "seed": self.seed, "max_tokens": self.max_tokens}


def key_from_env(environ: dict | None = None) -> Secret | None:
    """`OPENAI_API_KEY` (or `AZURE_OPENAI_API_KEY`) as a Secret, or None when unset or empty."""
    env = os.environ if environ is None else environ
    value = env.get("OPENAI_API_KEY") or env.get("AZURE_OPENAI_API_KEY") or ""
    return Secret(value.strip()) if value.strip() else None
