"""The rating server: stdlib `ThreadingHTTPServer`, the static page and a small JSON API.

Every path starts with the rater's link, `/r/<token>/`; nothing is served without a valid token.

    GET  /r/<token>/                 the page (index.html; app.js, app.css and favicon.svg beside it)
    GET  /r/<token>/api/session      rater, mode, progress, the rubric, the CSRF token
    GET  /r/<token>/api/queue        the rater's items in order: opaque id, position, rated or not
    GET  /r/<token>/api/item/<item>  one item: question, (reference), answer(s), the rater's latest rating
    POST /r/<token>/api/rating       save a rating (JSON; X-CSRF-Token header; same-origin only)

Status codes: 401 unknown or missing token; 403 an item outside the rater's queue, a missing or wrong
CSRF token or a cross-site POST; 400 an invalid rating, a target that is not a path (`GET http://...`)
or a body framed two ways (framing.py); 404, 405, 411, 413, 415, 421 as HTTP defines; 503 beyond
`MAX_CONNECTIONS` open connections. A request must arrive whole (request line, headers, body) within
`REQUEST_DEADLINE` seconds of its first byte, or its connection is dropped (connections.py); an idle
kept-alive connection is closed after `IDLE_TIMEOUT`. An error answer never repeats the request line.
The system that wrote an answer stays in the store: items are opaque random ids, and no page, JSON
body or header names a system. Access logs are off; with `access_log` the token is masked.
"""
from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files

from judge.human.app import Forbidden, RatingApp
from judge.human.auth import SECURITY_HEADERS, allowed_hosts, host_ok, same_origin_post
from judge.human.connections import GuardedServer
from judge.human.framing import Refused, body_length, target_path
from judge.human.payload import MAX_BODY, Invalid, parse_rating

IDLE_TIMEOUT = 60  # seconds a kept-alive connection may wait for its next request

_PATH = re.compile(r"/r/([A-Za-z0-9_-]{16,128})(/.*)?")
_TOKEN_IN_TEXT = re.compile(r"/r/[A-Za-z0-9_-]+")
_STATIC = {"": ("index.html", "text/html; charset=utf-8"), "app.js": ("app.js", "text/javascript; charset=utf-8"),
           "app.css": ("app.css", "text/css; charset=utf-8"), "favicon.svg": ("favicon.svg", "image/svg+xml")}


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = files("judge.human") / "static"
    return {route: ((folder / name).read_bytes(), ctype) for route, (name, ctype) in _STATIC.items()}


class RatingServer(GuardedServer, ThreadingHTTPServer):
    """One thread per connection (at most `max_connections`, each request within `request_deadline`:
    connections.py). Bind first (`app` may be attached afterwards, before serving)."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, app: RatingApp | None = None,
                 access_log: bool = False):
        self.guard_connections()  # before binding: a failed bind calls server_close
        super().__init__((host, port), _Handler)
        self.app, self.access_log = app, access_log
        self.allowed = allowed_hosts(host, self.server_address[1])
        self.static = _static_files()

    def handle_error(self, request, client_address) -> None:
        """A client hanging up is normal; anything else is reported without the request line."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            print(f"server error: {type(sys.exc_info()[1]).__name__}", file=sys.stderr)


@contextmanager
def serving(server: RatingServer):
    """Serve in a background thread for the duration of the `with` block, then stop and close."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response has a Content-Length
    default_request_version = "HTTP/1.0"  # so an unreadable request line is answered with a status line too
    timeout = IDLE_TIMEOUT

    def setup(self) -> None:
        super().setup()
        # Headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm and the client's
        # delayed ACK add ~40 ms to each response on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        """Wait up to `timeout` for a request's first byte, then give the whole request its deadline."""
        try:
            if not self.rfile.peek(1):
                self.close_connection = True
                return
        except OSError:  # the idle timeout, or the client went away
            self.close_connection = True
            return
        self.server.start_clock(self.connection, time.monotonic())
        try:
            super().handle_one_request()
        finally:
            self.server.stop_clock(self.connection)

    def version_string(self) -> str:
        return "track-c"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's signature)
        if self.server.access_log:
            text = _TOKEN_IN_TEXT.sub("/r/<token>", format % args)
            print(f"{self.address_string()} {text}", file=sys.stderr)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own errors (bad request line, unknown method, headers too large) in our format,
        with our headers, and without the stdlib's message: it repeats the request line, token included."""
        self.close_connection = True
        self._send(code, {"error": HTTPStatus(code).phrase.lower()})

    def _send(self, status: int, body, headers: dict | None = None) -> None:
        if isinstance(body, tuple):
            data, ctype = body
        else:
            # backslashreplace: a lone surrogate (which payload.py refuses) would be a JSON escape, never a 500
            data = json.dumps(body, ensure_ascii=False).encode("utf-8", "backslashreplace")
            ctype = "application/json; charset=utf-8"
        self.send_response(status)
        for name, value in {**SECURITY_HEADERS, "Content-Type": ctype, "Content-Length": str(len(data)),
                            **(headers or {})}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _refuse_method(self) -> None:
        self.close_connection = True
        self._send(405, {"error": "method not allowed"}, {"Allow": "GET, POST"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _refuse_method  # noqa: N815

    def _serve(self) -> None:
        try:
            self._route()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Refused as exc:
            self.close_connection = True
            self._send(exc.status, {"error": str(exc)})
        except Exception as exc:  # an unexpected failure: say nothing about it to the client
            if self.server.closed:  # the store was closed under a request in flight at Ctrl-C
                self.close_connection = True
                return
            print(f"server error: {type(exc).__name__}: {exc}", file=sys.stderr)
            self.close_connection = True
            self._send(500, {"error": "internal error; the rating was not saved"})

    def _route(self) -> None:
        keep_alive = not self.close_connection  # the stdlib's reading of `Connection` and the HTTP version
        self.close_connection = True  # until the request is known to be read whole
        post = self.command == "POST"  # a POST's clock runs on until its body is read
        if not (self.server.on_time(self.connection) if post else self.server.stop_clock(self.connection)):
            return  # too late: the connection is already dropped
        if len(self.requestline.split()) != 3:  # HTTP/0.9's "GET /path": no version, no headers
            raise Refused(400, "the request line must be: method, target, HTTP version")
        length = body_length(self.headers)
        path = target_path(self.path)
        if path is None:
            raise Refused(400, "the request target must be a path (/r/<token>/...)")
        if not post:
            self.close_connection = not keep_alive or bool(length)  # an unread body would be the next request
        if not host_ok(self.headers.get("Host"), self.server.allowed):
            return self._send(421, {"error": "unknown host"})
        rater, rest = self._rater(path)
        if rater is None:
            return None
        if post:
            return self._post(rater, rest, length, keep_alive)
        app: RatingApp = self.server.app
        if rest in self.server.static:
            return self._send(200, self.server.static[rest])
        if rest == "api/session":
            return self._send(200, app.session(rater))
        if rest == "api/queue":
            return self._send(200, app.queue(rater))
        if rest.startswith("api/item/"):
            item = app.item(rater, rest[len("api/item/"):])
            return self._send(200, item) if item is not None else self._send(403, {"error": "not your item"})
        if rest == "api/rating":
            return self._send(405, {"error": "use POST"}, {"Allow": "POST"})
        return self._send(404, {"error": "not found"})

    def _rater(self, path: str) -> tuple[str | None, str]:
        """(the rater whose link `path` starts with, the rest of the path); None after answering 401 / 308."""
        match = _PATH.fullmatch(path)
        if match is None:
            self._send(401, {"error": "open the full link you were given"})
            return None, ""
        rater = self.server.app.gate.rater_for(match[1])
        if rater is None:
            self._send(401, {"error": "unknown link; ask for a new one"})
            return None, ""
        if match[2] is None:
            self._send(308, {"moved": "trailing slash"}, {"Location": f"/r/{match[1]}/"})
            return None, ""
        return rater, match[2][1:]

    def _post(self, rater: str, rest: str, length: int | None, keep_alive: bool) -> None:
        if rest != "api/rating":
            return self._send(405 if rest in self.server.static or rest.startswith("api/") else 404,
                              {"error": "POST goes to api/rating only"})
        if length is None:
            return self._send(411, {"error": "Content-Length required"})
        if length > MAX_BODY:
            return self._send(413, {"error": f"body larger than {MAX_BODY} bytes"})
        raw = self.rfile.read(length)
        if not self.server.stop_clock(self.connection) or len(raw) != length:
            return None  # too late or cut short: nothing is stored, the connection ends
        self.close_connection = not keep_alive
        return self._rate(self.server.app, rater, raw)

    def _rate(self, app: RatingApp, rater: str, raw: bytes) -> None:
        why = same_origin_post(self.headers, self.headers.get("Host", ""))
        if why is not None:
            return self._send(403, {"error": why})
        if not app.gate.csrf_ok(rater, self.headers.get("X-CSRF-Token")):
            return self._send(403, {"error": "missing or stale CSRF token; reload the page"})
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            return self._send(415, {"error": "Content-Type must be application/json"})
        try:
            rating = parse_rating(raw, app.pairwise)
            return self._send(200, app.rate(rater, rating))
        except Invalid as exc:
            return self._send(400, {"error": str(exc)})
        except Forbidden as exc:
            return self._send(403, {"error": str(exc)})
