"""How many connections the rating server keeps, and for how long a request may take to arrive.

Each connection has a thread, so both are bounded: at most `MAX_CONNECTIONS` are open at once (one
more is answered 503 and closed, without a thread), and a request must arrive whole (request line,
headers and body) within `REQUEST_DEADLINE` seconds of its first byte. A client that sends a byte a
second is dropped then, however long its socket timeout would have let it trickle. The deadlines are
checked between polls of `serve_forever` (`service_actions`), so a late connection is dropped within
the poll interval after its deadline.
"""
from __future__ import annotations

import socket
import threading
import time

from judge.human.auth import SECURITY_HEADERS
from plumbing.signals import raise_if_interrupted

MAX_CONNECTIONS = 128    # open connections at once (20 raters with a browser's 6 each fit)
REQUEST_DEADLINE = 10.0  # seconds from a request's first byte to its last


def _busy_answer() -> bytes:
    """The whole 503 sent to a connection beyond the cap."""
    body = b'{"error": "too many connections; retry in a few seconds"}'
    head = {**SECURITY_HEADERS, "Content-Type": "application/json; charset=utf-8", "Retry-After": "5",
            "Connection": "close", "Content-Length": str(len(body))}
    lines = ["HTTP/1.1 503 Service Unavailable", *(f"{k}: {v}" for k, v in head.items()), "", ""]
    return "\r\n".join(lines).encode("ascii") + body


BUSY = _busy_answer()


def hang_up(conn: socket.socket) -> None:
    """End a connection both ways (its thread's reads see the end, its writes fail)."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class GuardedServer:
    """Mixin for a `socketserver` server: the connection cap and the request deadlines.

    Attributes:
        max_connections: open connections at once; the next one is answered 503.
        request_deadline: seconds a request may take to arrive, from its first byte.
        connections: each open connection -> the deadline of the request being read (None: none is).
    """

    max_connections = MAX_CONNECTIONS
    request_deadline = REQUEST_DEADLINE

    def guard_connections(self) -> None:
        """Set up the bookkeeping; call first in `__init__`, before binding."""
        self.connections: dict[socket.socket, float | None] = {}
        self.late: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.closed = False  # set by server_close: a request still in flight then fails quietly

    def verify_request(self, request, client_address) -> bool:
        """Count the connection in, or answer 503 when `max_connections` are open (it is then closed)."""
        with self.connections_lock:
            if len(self.connections) < self.max_connections:
                self.connections[request] = None
                return True
        try:
            request.send(BUSY, socket.MSG_DONTWAIT)  # a few hundred bytes into a fresh socket's buffer
        except OSError:
            pass
        return False

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.pop(request, None)
            self.late.discard(request)
        super().shutdown_request(request)

    def start_clock(self, conn: socket.socket, first_byte_at: float) -> None:
        """A request began to arrive on `conn` at `first_byte_at` (time.monotonic())."""
        with self.connections_lock:
            if conn in self.connections:
                self.connections[conn] = first_byte_at + self.request_deadline

    def stop_clock(self, conn: socket.socket) -> bool:
        """The request on `conn` has arrived whole; False when it was too late (the connection is dropped)."""
        with self.connections_lock:
            if conn in self.connections:
                self.connections[conn] = None
            return conn not in self.late

    def on_time(self, conn: socket.socket) -> bool:
        """Whether the request on `conn` has not missed its deadline (its clock keeps running)."""
        with self.connections_lock:
            return conn not in self.late

    def service_actions(self) -> None:
        """Between polls of `serve_forever`: drop every connection whose request missed its deadline (and stop for
        a SIGTERM that was swallowed: `raise_if_interrupted`)."""
        super().service_actions()
        raise_if_interrupted()
        now = time.monotonic()
        with self.connections_lock:
            late = [c for c, deadline in self.connections.items() if deadline is not None and deadline < now]
            for conn in late:
                self.connections[conn] = None
                self.late.add(conn)
        for conn in late:
            hang_up(conn)

    def server_close(self) -> None:
        """Stop listening and end the open connections too, so no request is served afterwards."""
        self.closed = True
        super().server_close()
        with self.connections_lock:
            open_now = list(self.connections)
        for conn in open_now:
            hang_up(conn)
