"""Judge configuration: endpoint, model, sampling parameters and limits, with a key that never prints."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from judge.errors import JudgeError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o"  # The paper says "GPT-4" without a version; pass --model to pin one.
DEFAULT_AZURE_API_VERSION = "2024-06-01"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
RESPONSE_FORMATS = ("auto", "json_schema", "json_object", "none")  # "auto": the three in this order


class Secret:
    """Holds an API key so that repr(), str(), f-strings, logs and tracebacks show only `***`."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str):
            raise TypeError(f"Secret holds a key string, got {type(value).__name__}")
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
    the rest (endpoint, limits, timeouts) only change how requests travel.

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

    base_url: str = DEFAULT_BASE_URL
    model: str = DEFAULT_MODEL
    api_key: Secret | None = field(default=None, repr=False, compare=False)
    api_version: str | None = None
    temperature: float = 0.0
    seed: int = 0
    max_tokens: int = 400
    timeout: float = 120.0
    connect_timeout: float = 10.0
    concurrency: int = 8
    rpm: float | None = None
    max_retries: int = 6
    response_format: str = "auto"

    def __post_init__(self) -> None:
        """Check every field; a wrong type is a TypeError, a bad value a JudgeError naming the field."""
        def kind(name: str, types, text: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)) \
                    or not isinstance(value, types):
                raise TypeError(f"JudgeConfig.{name} must be {text}, got {type(value).__name__}")

        for name in ("base_url", "model", "response_format"):
            kind(name, str, "a string")
        if self.api_key is not None and not isinstance(self.api_key, Secret):
            raise TypeError("JudgeConfig.api_key must be a judge.Secret (Secret(key), so it never prints) or None, "
                            f"got {type(self.api_key).__name__}")
        if self.api_version is not None:
            kind("api_version", str, "a string or None")
        for name in ("seed", "max_tokens", "concurrency", "max_retries"):
            kind(name, int, "an integer")
        for name in ("temperature", "timeout", "connect_timeout"):
            kind(name, (int, float), "a number")
        if self.rpm is not None:
            kind("rpm", (int, float), "a number or None")
        problem = url_problem(self.base_url)
        checks = [
            ("base_url", problem is None, f"{self.base_url!r} {problem}"),
            ("model", bool(self.model.strip()), "must not be empty"),
            ("temperature", math.isfinite(self.temperature) and self.temperature >= 0, "must be a finite number >= 0"),
            ("max_tokens", self.max_tokens >= 1, "must be >= 1"),
            ("timeout", math.isfinite(self.timeout) and self.timeout > 0, "must be a positive number"),
            ("connect_timeout", math.isfinite(self.connect_timeout) and self.connect_timeout > 0,
             "must be a positive number"),
            ("concurrency", self.concurrency >= 1, "must be >= 1"),
            ("rpm", self.rpm is None or (math.isfinite(self.rpm) and self.rpm > 0), "must be None or a positive number"),
            ("max_retries", self.max_retries >= 0, "must be >= 0"),
            ("response_format", self.response_format in RESPONSE_FORMATS, f"must be one of {RESPONSE_FORMATS}"),
        ]
        for name, ok, problem in checks:
            if not ok:
                got = "" if name == "base_url" else f", got {getattr(self, name)!r}"
                raise JudgeError(f"JudgeConfig.{name} {problem}{got}")

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
