"""An OpenAI-compatible stand-in server on loopback, to exercise the judge pipeline offline.

IT IS NOT A JUDGE. Its scores come from a transparent word-overlap heuristic (`heuristic_scores`, in
`answers.py`): relevance from the share of the question's content words found in the
answer, comprehensiveness from the answer's length, helpfulness their rounded mean, accuracy fixed at
3 (a heuristic cannot check facts). Every justification says so. Its purpose is testing and demos: it
can also be scripted, per request, to misbehave like real endpoints do.

Behaviour specs (`kind` or `kind:name=value`), by request index:
    ok                 heuristic JSON answer (the default)
    slow:ms=N          answer after N extra milliseconds
    429 | 500 | 503 | 408 | 409 | 502 | 504   that status; add `:retry-after=V` or `:retry-after-ms=V`
    quota              429 with code insufficient_quota (the client must stop)
    401                refused key; the body echoes the key it got (the client must redact it)
    400                invalid request (the client must stop)
    malformed          HTTP 200 whose body is not JSON
    truncated          HTTP 200 whose body stops half-way, then the connection closes
    drop               the connection closes without any response
    prose              an answer in words, no JSON and no scores
    marks              scores as `Accuracy: [[4]]` lines
    json_in_text       the JSON answer wrapped in prose
    out_of_range       JSON with an impossible score of 7
    empty              an empty message
    length             the first quarter of the JSON answer, finish_reason "length" (a reply cut at max_tokens)
    detail400          HTTP 400 with a FastAPI-style body {"detail": "..."} (vLLM, proxies) echoing the key

Run: `python -m judge.standin --port 8089 [--latency-ms 200] [--fail-plan "429:retry-after=1,2*500,drop"]`
then `python -m judge run --base-url http://127.0.0.1:8089/v1 ...` (no key needed on loopback).
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from plumbing.command import ArgumentParser, run_cli
from plumbing.errors import os_problem

from judge.standin.answers import LABEL, SERVED_MODEL, _answer


class _Server(ThreadingHTTPServer):
    """One thread per connection; holds the script, the options and the request counter."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, latency_ms, script, reject_formats, position_bias, log):
        super().__init__(address, _Handler)
        self.latency_ms, self.script = latency_ms, script
        self.reject_formats, self.position_bias, self.log = set(reject_formats), position_bias, log
        self._count, self._lock = 0, threading.Lock()

    def handle_error(self, request, client_address) -> None:
        """Clients that hang up (timeouts, a killed run) are normal here; other errors are printed."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def behaviour(self, body: dict) -> tuple[int, str]:
        """(request index, behaviour spec) for the next request, from the script or "ok"."""
        with self._lock:
            index, self._count = self._count, self._count + 1
        script = self.script
        if callable(script):
            spec = script(index, body)
        elif isinstance(script, dict):
            spec = script.get(index)
        elif script is not None and index < len(script):
            spec = script[index]
        else:
            spec = None
        return index, spec or "ok"


class _Handler(BaseHTTPRequestHandler):
    """Answers POST .../chat/completions as scripted; GET .../models lists the stand-in."""

    protocol_version = "HTTP/1.1"  # keep-alive, like real endpoints

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the
        # peer's delayed ACK would add ~40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args) -> None:  # quiet: tests and demos read stdout
        pass

    def do_POST(self) -> None:
        """Read the request, log it, wait the latency, then act out its behaviour."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self.path.split("?")[0].endswith("/chat/completions"):
            return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        try:
            body = json.loads(raw)
        except ValueError:
            return self._send(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
        index, spec = self.server.behaviour(body)
        if self.server.log is not None:
            self.server.log.append({"index": index, "path": self.path, "headers": dict(self.headers),
                                    "body": raw.decode("utf-8"), "behaviour": spec})
        kind, _, option = spec.partition(":")
        name, _, value = option.partition("=")
        delay = self.server.latency_ms + (float(value) if kind == "slow" else 0.0)
        if delay:
            time.sleep(delay / 1000.0)
        fmt = (body.get("response_format") or {}).get("type")
        if fmt in self.server.reject_formats:
            return self._send(400, {"error": {"message": f"response_format type {fmt!r} is not supported",
                                              "type": "invalid_request_error", "param": "response_format"}})
        if kind.isdigit():
            headers = {name: value} if name else {}
            return self._send(int(kind), {"error": {"message": f"stand-in scripted HTTP {kind}",
                                                    "type": "server_error"}}, headers)
        if kind == "quota":
            return self._send(429, {"error": {"message": "You exceeded your current quota, please check your plan "
                                              "and billing details.", "type": "insufficient_quota",
                                              "code": "insufficient_quota"}})
        if kind == "detail400":  # echoes the key it got, as a careless proxy might
            sent = self.headers.get("Authorization", "") or self.headers.get("api-key", "")
            return self._send(400, {"detail": f"stand-in scripted detail: model {body.get('model')!r} does not "
                                              f"exist (request authorised with {sent})"})
        if kind == "drop":
            self.close_connection = True
            return
        if kind == "malformed":
            return self._send_raw(200, b'{"choices": [{"message": {"content": "half', complete=True)
        content = {"prose": "The answer is reasonable and addresses the patient's concern fairly well.",
                   "empty": ""}.get(kind)
        content = _answer(body, kind, self.server.position_bias) if content is None else content
        if kind == "length":
            content = content[: len(content) // 4]  # cut early: within the scores, not only the justification
        reply = {"id": f"standin-{index}", "object": "chat.completion", "created": int(time.time()),
                 "model": SERVED_MODEL, "system_fingerprint": "standin-heuristic",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": "length" if kind == "length" else "stop"}],
                 "usage": {"prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in body.get("messages", [])),
                           "completion_tokens": len(content.split())}}
        if kind == "truncated":
            data = json.dumps(reply).encode()
            return self._send_raw(200, data, complete=False)
        self._send(200, reply)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "standin", "object": "model"}]}
                   if self.path.rstrip("/").endswith("/models") else {"status": f"{LABEL}: POST /v1/chat/completions"})

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        if status == 401:
            sent = self.headers.get("Authorization", "") or self.headers.get("api-key", "")
            payload = {"error": {"message": f"Incorrect API key provided: {sent}", "type": "invalid_request_error",
                                 "code": "invalid_api_key"}}  # worst case: echoes the key it was sent
        self._send_raw(status, json.dumps(payload).encode(), complete=True, headers=headers)

    def _send_raw(self, status: int, data: bytes, complete: bool, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data if complete else data[: len(data) // 2])
        self.wfile.flush()
        if not complete:
            self.close_connection = True


def start_standin(port: int = 0, latency_ms: float = 0, script=None, *, reject_formats=(), position_bias=False,
                  log: list | None = None, host: str = "127.0.0.1"):
    """Start the stand-in in a background thread.

    Args:
        port: TCP port (0 picks a free one).
        latency_ms: delay before every answer (threaded: concurrent requests wait in parallel).
        script: behaviour per request index: a list of specs, a dict {index: spec}, or a callable
            `(index, body) -> spec`; unscripted requests get "ok".
        reject_formats: response_format types answered with a 400 (e.g. {"json_schema"}).
        position_bias: in pairwise prompts always prefer the answer shown first (to test bias metrics).
        log: a list that receives every request (index, path, headers, body, behaviour).

    Returns:
        (base_url, stop): base_url ends in /v1; stop() shuts the server down.
    """
    server = _Server((host, port), latency_ms, script, reject_formats, position_bias, log)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="judge-standin",
                              daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return f"http://{host}:{server.server_address[1]}/v1", stop


BEHAVIOURS = ("ok", "slow", "quota", "drop", "malformed", "truncated", "prose", "marks", "json_in_text",
              "out_of_range", "empty", "length", "detail400")  # plus any HTTP status code, e.g. "503"


def parse_fail_plan(text: str) -> list[str]:
    """`"429:retry-after=1,2*500,drop"` -> ["429:retry-after=1", "500", "500", "drop"].

    Raises:
        ValueError: an unknown behaviour (one line naming it and the known ones).
    """
    plan = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        count, star, spec = part.partition("*")
        specs = [spec] * int(count) if star and count.isdigit() else [part]
        kind = specs[0].partition(":")[0] if specs else "ok"
        if not (kind in BEHAVIOURS or (kind.isdigit() and 100 <= int(kind) <= 599)):
            raise ValueError(f"unknown behaviour {kind!r} in {part!r}; known: {', '.join(BEHAVIOURS)} or an HTTP "
                             "status such as 503")
        plan += specs
    return plan


def main(argv: list[str] | None = None) -> int:
    """`python -m judge.standin`: serve until Ctrl-C (exit 130) or SIGTERM (exit 143); docs/cli.md."""
    parser = ArgumentParser(prog="python -m judge.standin", description=f"{LABEL}: " + __doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8089, help="TCP port (0: any free one; default 8089)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: loopback only)")
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--fail-plan", default="", help="comma-separated behaviours of the first requests")
    parser.add_argument("--reject-formats", default="", help="e.g. json_schema,json_object")
    parser.add_argument("--position-bias", action="store_true")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: must be in 0..65535, got {args.port}")
    if not (args.latency_ms >= 0 and args.latency_ms != float("inf")):
        parser.error(f"--latency-ms: must be a finite number >= 0, got {args.latency_ms}")
    try:
        plan = parse_fail_plan(args.fail_plan)
    except ValueError as exc:
        parser.error(f"--fail-plan: {exc}")

    def serve() -> int:
        try:
            url, stop = start_standin(args.port, args.latency_ms, plan,
                                      reject_formats=[f for f in args.reject_formats.split(",") if f],
                                      position_bias=args.position_bias, host=args.host)
        except OSError as exc:
            raise OSError(f"--host {args.host} --port {args.port}: cannot listen there ({os_problem(exc)})") from None
        try:
            print(f"{LABEL}: OpenAI-compatible stand-in at {url} (word-overlap heuristic); Ctrl-C stops", flush=True)
            threading.Event().wait()
        finally:
            stop()
        return 0

    return run_cli(serve, handled=(OSError,), interrupted="stand-in stopped")
