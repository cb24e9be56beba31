"""Async client for any OpenAI-compatible `/v1/chat/completions` endpoint, with careful retries."""
from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import httpx

from judge.llm.config import JudgeConfig, redact
from judge.errors import FatalJudgeError
from judge.llm.ratelimit import Throttle
from judge.llm.retry import (backoff_seconds, is_quota_error, is_retryable_status, mentions_response_format,
                             retry_after_seconds)

FORMAT_MODES = ("json_schema", "json_object", "none")  # tried in this order with response_format="auto"


def request_body(config: JudgeConfig, messages: list[dict], schema: dict, schema_name: str, mode: str,
                 max_tokens: int | None = None) -> dict:
    """The JSON body of a chat request: model, messages, sampling parameters and `response_format`.

    `mode` is "json_schema" (strict schema), "json_object" (any JSON) or "none" (no field sent);
    `max_tokens` overrides the config's cap (a repair request after a reply cut at the cap).
    """
    body = {"model": config.model, "messages": messages, **config.sampling}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if mode == "json_schema":
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": schema_name, "schema": schema, "strict": True}}
    elif mode == "json_object":
        body["response_format"] = {"type": "json_object"}
    return body


class RequestFailed(Exception):
    """One request failed for good after all retries; the item is recorded as an error, the run goes on."""


@dataclass
class ChatResult:
    """The judge's answer to one request.

    Attributes:
        text: the assistant message content ("" when the server sent none).
        usage: token counts summed over every attempt that returned usage.
        attempts: HTTP attempts made (1 when the first one succeeded).
        response_format: the structured-output mode the successful attempt asked for (whether the
            server honoured it shows in the reply: see `judge.llm.parse.reply_format`).
        finish_reason: the server's finish reason ("stop", "length", ...), if given.
        served_model: the model name the server says answered (e.g. a dated snapshot), if given.
    """

    text: str
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})
    attempts: int = 1
    response_format: str = "none"
    finish_reason: str | None = None
    served_model: str | None = None


class JudgeClient:
    """Sends chat requests with bounded concurrency, an rpm limit and the retry rules of `judge.llm.retry`.

    Args:
        config: endpoint, model, sampling parameters and limits.
        transport: optional httpx transport (tests may pass one; the stand-in server needs none).
        sleep: coroutine used to wait between attempts (tests inject one that records delays).
        rng: random source of the backoff jitter (seeded for reproducible tests).
        now: wall clock in Unix seconds, to turn a `retry-after` HTTP date into a delay.
    """

    def __init__(self, config: JudgeConfig, *, transport: httpx.AsyncBaseTransport | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, rng: random.Random | None = None,
                 now: Callable[[], float] = time.time):
        self.config = config
        self._sleep, self._now = sleep, now
        self._rng = rng or random.Random(config.seed)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
            limits=httpx.Limits(max_connections=config.concurrency,
                                max_keepalive_connections=config.concurrency),
            transport=transport)
        self.throttle = Throttle(config.concurrency, config.rpm)
        modes = FORMAT_MODES if config.response_format == "auto" else (config.response_format,)
        self._modes = list(modes)  # shared: a downgrade after a rejection holds for later requests
        self.delays: list[float] = []  # every wait between attempts, in seconds (for logs and tests)

    async def __aenter__(self) -> "JudgeClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    @property
    def response_format(self) -> str:
        """The structured-output mode currently used."""
        return self._modes[0]

    def body(self, messages: list[dict], schema: dict, schema_name: str, max_tokens: int | None = None) -> dict:
        """The JSON request body in the current structured-output mode."""
        return request_body(self.config, messages, schema, schema_name, self._modes[0], max_tokens)

    async def chat(self, messages: list[dict], schema: dict, schema_name: str = "judgment",
                   max_tokens: int | None = None) -> ChatResult:
        """Send one chat request, retrying as the rules say (`max_tokens` overrides the config's cap).

        Raises:
            FatalJudgeError: 401/403, a quota 429, another 4xx, or no connection after all retries.
            RequestFailed: retries exhausted on a transient error (timeouts, 429, 5xx, bad body).
        """
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        attempts, retries = 0, 0
        while True:
            attempts += 1
            mode = self._modes[0]
            payload = json.dumps(self.body(messages, schema, schema_name, max_tokens), ensure_ascii=False)
            hint, problem, connect_failed = None, None, False
            try:
                async with self.throttle:
                    response = await self._http.post(self.config.endpoint, params=self.config.params,
                                                     headers=self.config.headers(), content=payload)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                problem, connect_failed = f"cannot connect ({type(exc).__name__}: {exc})", True
            except httpx.TimeoutException as exc:
                problem = f"timed out ({type(exc).__name__})"
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__}: {exc})"
            else:
                text = redact(response.text, self.config.api_key)
                status = response.status_code
                if status == 200:
                    try:
                        data = json.loads(text)
                        choice = data["choices"][0]
                        content = choice["message"].get("content") or ""
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                        problem = f"malformed response body ({text[:80]!r})"
                    else:
                        for k in usage:
                            usage[k] += int((data.get("usage") or {}).get(k) or 0)
                        return ChatResult(content, usage, attempts, mode, choice.get("finish_reason"),
                                          data.get("model"))
                elif status in (400, 422) and mentions_response_format(text) and self._downgrade(mode):
                    continue  # try again at once with a simpler response_format
                elif status == 429 and is_quota_error(text):
                    raise FatalJudgeError(f"{self._where()}: HTTP 429, quota exhausted: {_message(text)}")
                elif status in (401, 403):
                    raise FatalJudgeError(f"{self._where()}: HTTP {status}, the API key was refused "
                                          f"(check OPENAI_API_KEY): {_message(text)}")
                elif not is_retryable_status(status):
                    raise FatalJudgeError(f"{self._where()}: HTTP {status}: {_message(text)}")
                else:
                    problem = f"HTTP {status}"
                    hint = retry_after_seconds(response.headers, now=self._now())
            if retries >= self.config.max_retries:
                if connect_failed:
                    raise FatalJudgeError(f"{self._where()}: {problem} after {attempts} attempts")
                raise RequestFailed(f"gave up after {attempts} attempts: {problem}")
            retries += 1
            delay = hint if hint is not None else backoff_seconds(retries, self._rng)
            self.delays.append(delay)
            await self._sleep(delay)

    def _downgrade(self, mode: str) -> bool:
        """Drop a `response_format` mode the server rejected; False when no simpler mode is left.

        Safe with many requests in flight: only the first rejection of `mode` drops it.
        """
        if self._modes[0] == mode and len(self._modes) > 1:
            self._modes.pop(0)
        return self._modes[0] != mode

    def _where(self) -> str:
        return f"judge endpoint {self.config.endpoint}"


def _message(text: str, limit: int = 200) -> str:
    """What the server said, in one line: `error.message` of an OpenAI-style body, `detail` of a
    FastAPI-style one (vLLM, many proxies), `message`, or a plain `error` string; else the body itself
    (any other JSON shape, HTML, plain text). The caller has already redacted the key from `text`."""
    msg = None
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        for value in (error.get("message") if isinstance(error, dict) else error, body.get("detail"),
                      body.get("message")):
            if value:
                msg = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                break
    msg = " ".join((msg or text or "(empty body)").split())
    return msg[:limit] + ("..." if len(msg) > limit else "")
