"""The httpx client against the loopback stand-in: retry rules, recorded delays, fatal stops, fallbacks."""
import asyncio
import json
import random
import socket

import httpx
import pytest

from judge.llm.client import JudgeClient, RequestFailed
from judge.llm.config import JudgeConfig, Secret
from judge.errors import FatalJudgeError
from judge.llm.retry import MAX_BACKOFF, backoff_seconds, retry_after_seconds
from judge.rubric import POINTWISE_SCHEMA, pointwise_messages
from judge.standin import start_standin

MESSAGES = pointwise_messages("My head hurts after running, why?", "Headaches after running often come "
                              "from dehydration; drink water and rest.")
KEY = "sk-test-SECRET-0123456789abcdef"


@pytest.fixture
def standin():
    """Factory: start a stand-in with a script; every server is stopped after the test."""
    stops = []

    def start(script=None, **kwargs):
        log = []
        url, stop = start_standin(script=script, log=log, **kwargs)
        stops.append(stop)
        return url, log

    yield start
    for stop in stops:
        stop()


def chat(url, *, max_retries=6, now=None, response_format="auto", **config):
    """Run one request with a fake sleep; returns (result or exception, recorded delays)."""
    delays = []

    async def fake_sleep(seconds):
        delays.append(seconds)
        await asyncio.sleep(0)

    async def go():
        cfg = JudgeConfig(base_url=url, max_retries=max_retries, api_key=Secret(KEY),
                          response_format=response_format, **config)
        kwargs = {"now": now} if now else {}
        async with JudgeClient(cfg, sleep=fake_sleep, rng=random.Random(0), **kwargs) as client:
            try:
                return await client.chat(MESSAGES, POINTWISE_SCHEMA), client
            except (FatalJudgeError, RequestFailed) as exc:
                return exc, client

    outcome, client = asyncio.run(go())
    assert delays == client.delays
    return outcome, delays


def test_retry_after_header_forms():
    h = httpx.Headers
    assert retry_after_seconds(h({"retry-after-ms": "1500", "retry-after": "9"})) == 1.5
    assert retry_after_seconds(h({"retry-after": "3"})) == 3.0
    assert retry_after_seconds(h({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}), now=1445412450.0) == 30.0
    assert retry_after_seconds(h({"retry-after": "600"})) == 120.0  # capped at 120 s
    assert retry_after_seconds(h({"retry-after": "soon"})) is None
    assert retry_after_seconds(h({"retry-after": "-1"})) is None
    assert retry_after_seconds(h({})) is None


def test_backoff_is_exponential_with_jitter_and_capped():
    rng = random.Random(1)
    for retry in range(1, 12):
        base = min(0.5 * 2 ** (retry - 1), MAX_BACKOFF)
        for _ in range(50):
            assert 0.75 * base <= backoff_seconds(retry, rng) <= base <= 8.0


@pytest.mark.parametrize("spec, expected", [
    ("429:retry-after=2", 2.0),
    ("429:retry-after-ms=1500", 1.5),
    ("503:retry-after=600", 120.0),
    ("429:retry-after=Wed, 21 Oct 2015 07:28:00 GMT", 30.0),
])
def test_server_hint_is_honoured(standin, spec, expected):
    url, log = standin([spec])
    result, delays = chat(url, now=lambda: 1445412450.0)
    assert delays == [expected] and result.attempts == 2 and len(log) == 2


@pytest.mark.parametrize("spec", ["500", "503", "502", "408", "409", "429", "malformed", "truncated", "drop",
                                  pytest.param("slow:ms=1500", marks=pytest.mark.slow)])
def test_transient_failures_back_off_then_succeed(standin, spec):
    url, log = standin([spec, spec, spec])
    result, delays = chat(url, timeout=0.5)
    assert result.attempts == 4 and json.loads(result.text)["accuracy"] == 3
    assert len(delays) == 3
    for retry, delay in enumerate(delays, start=1):
        assert 0.75 * 0.5 * 2 ** (retry - 1) <= delay <= 0.5 * 2 ** (retry - 1)


def test_retries_exhausted_is_an_item_failure(standin):
    url, log = standin(["500"] * 10)
    result, delays = chat(url, max_retries=7)
    assert isinstance(result, RequestFailed) and "8 attempts" in str(result) and len(log) == 8
    assert max(delays) <= MAX_BACKOFF and delays[-1] > 4.0  # capped at 8 s, after growing


@pytest.mark.parametrize("spec, words", [("quota", "quota"), ("401", "API key"), ("400", "HTTP 400")])
def test_fatal_statuses_stop_at_once(standin, spec, words):
    url, log = standin([spec])
    result, delays = chat(url)
    assert isinstance(result, FatalJudgeError) and words in str(result)
    assert len(log) == 1 and delays == []
    assert KEY not in str(result) and KEY not in repr(result)


def test_key_header_and_redaction(standin):
    url, log = standin(["401"])
    result, _ = chat(url)
    assert log[0]["headers"]["Authorization"] == f"Bearer {KEY}"  # the stand-in echoed it back ...
    assert "***" in str(result) and KEY not in str(result)  # ... and the client redacted it


def test_azure_style_requests(standin):
    url, log = standin()
    result, _ = chat(url.replace("/v1", "/openai/deployments/gpt4"), api_version="2024-06-01")
    assert result.text
    assert log[0]["path"] == "/openai/deployments/gpt4/chat/completions?api-version=2024-06-01"
    assert log[0]["headers"]["api-key"] == KEY and "Authorization" not in log[0]["headers"]


def test_response_format_fallback(standin):
    url, log = standin(reject_formats={"json_schema", "json_object"})
    result, delays = chat(url)
    kinds = [(json.loads(r["body"]).get("response_format") or {}).get("type") for r in log]
    assert kinds == ["json_schema", "json_object", None] and result.response_format == "none"
    assert delays == [] and json.loads(result.text)["relevance"] >= 1


def test_fixed_response_format_rejected_is_fatal(standin):
    url, log = standin(reject_formats={"json_object"})
    result, _ = chat(url, response_format="json_object")
    assert isinstance(result, FatalJudgeError) and "response_format" in str(result) and len(log) == 1


def test_unreachable_host_is_fatal_after_retries():
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result, delays = chat(f"http://127.0.0.1:{port}/v1", max_retries=2)
    assert isinstance(result, FatalJudgeError) and "cannot connect" in str(result) and len(delays) == 2


def test_secret_never_prints():
    cfg = JudgeConfig(api_key=Secret(KEY))
    for text in (repr(cfg), str(cfg), repr(cfg.api_key), f"{cfg.api_key}"):
        assert KEY not in text
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(cfg.api_key)
