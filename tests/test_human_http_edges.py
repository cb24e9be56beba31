"""Track C server at the edges of HTTP, through raw sockets: bodies that used to end in a 500, framing
that could smuggle a second request, `Connection: close`, slow clients, the connection cap, request
targets that are not paths, and error answers that must not repeat the request line."""
from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from _human_util import final_ratings, running_study
from judge.rubric import DIMENSIONS

GOOD = {d: 3 for d in DIMENSIONS}


@pytest.fixture
def study(tmp_path):
    with running_study(tmp_path, raters=("alice",), n=2) as running:
        yield running


def connect(study, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", study.server.server_address[1]), timeout=timeout)


def read_response(f) -> tuple[int, dict, bytes]:
    """(status, headers with lower-case names, body) of one response read from the socket file `f`."""
    status_line = f.readline()
    assert status_line.startswith(b"HTTP/1."), status_line
    headers = {}
    for line in iter(f.readline, b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, f.read(int(headers["content-length"]))


def closed(f, within: float = 3.0) -> bool:
    """Whether the server ends the connection within `within` seconds (True), or keeps it open."""
    f.raw._sock.settimeout(within)
    try:
        return f.read(1) == b""
    except (TimeoutError, socket.timeout):
        return False
    except ConnectionResetError:
        return True


def head(study, method: str = "POST", path: str = "api/rating", version: str = "HTTP/1.1") -> bytes:
    port = study.server.server_address[1]
    return f"{method} /r/{study.links['alice']}/{path} {version}\r\nHost: 127.0.0.1:{port}\r\n".encode()


def csrf_and_item(study) -> tuple[str, str]:
    with httpx.Client() as c:
        csrf = c.get(study.url("alice", "api/session")).json()["csrf"]
        return csrf, c.get(study.url("alice", "api/queue")).json()["items"][0]["item"]


def rating_post(study, body: bytes, extra: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    csrf, _ = csrf_and_item(study)
    return (head(study, version=version) + f"X-CSRF-Token: {csrf}\r\nContent-Type: application/json\r\n".encode()
            + extra + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


@pytest.mark.parametrize("case", ["surrogate", "deep", "superscript", "5000 digits", "zeros then 5"])
def test_what_used_to_be_a_500_is_a_4xx_and_stores_nothing(study, capsys, case):
    csrf, item = csrf_and_item(study)
    body = json.dumps({"item": item, "scores": GOOD, "comment": "\ud800"}).encode()  # the escape "\ud800"
    length = str(len(body)).encode()
    if case == "deep":
        body = b"[" * 8000 + b"]" * 8000
        length = str(len(body)).encode()
    elif case == "superscript":
        length = "²".encode("latin-1")  # str.isdigit() says yes, int() says no
    elif case == "5000 digits":
        length = b"1" * 5000
    elif case == "zeros then 5":
        length = b"0" * 4300 + b"5"
    request = (head(study) + f"X-CSRF-Token: {csrf}\r\nContent-Type: application/json\r\n".encode()
               + b"Content-Length: " + length + b"\r\n\r\n" + body)
    with connect(study) as s, s.makefile("rb") as f:
        s.sendall(request)
        status, _, answer = read_response(f)
    assert status in (400, 411, 413), (status, answer)
    assert "error" in json.loads(answer)
    assert final_ratings(study) == [] and "server error" not in capsys.readouterr().err


@pytest.mark.parametrize("extra, version", [(b"Connection: close\r\n", "HTTP/1.1"), (b"", "HTTP/1.0")])
def test_a_post_honours_connection_close_and_http_1_0(study, extra, version):
    _, item = csrf_and_item(study)
    body = json.dumps({"item": item, "scores": GOOD}).encode()
    with connect(study) as s, s.makefile("rb") as f:
        s.sendall(rating_post(study, body, extra, version))
        status, headers, _ = read_response(f)
        assert status == 200 and headers["connection"] == "close"
        assert closed(f, within=2.0)  # at once, not after the 60 s idle timeout


def test_a_post_keeps_a_kept_alive_connection_open(study):
    _, item = csrf_and_item(study)
    body = json.dumps({"item": item, "scores": GOOD}).encode()
    with connect(study) as s, s.makefile("rb") as f:
        s.sendall(rating_post(study, body))
        assert read_response(f)[0] == 200
        s.sendall(head(study, "GET", "api/queue") + b"\r\n")
        assert read_response(f)[0] == 200  # the same connection serves the next request
    assert len(final_ratings(study)) == 1


@pytest.mark.parametrize("framing", ["two lengths", "chunked and a length", "a GET with a body"])
def test_a_body_framed_two_ways_is_refused_and_nothing_is_smuggled(study, framing):
    smuggled = head(study, "GET", "api/session") + b"\r\n"
    if framing == "two lengths":
        request = head(study) + b"Content-Type: application/json\r\nContent-Length: 0\r\n" + \
            f"Content-Length: {len(smuggled)}\r\n\r\n".encode() + smuggled
    elif framing == "chunked and a length":
        chunked = f"{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n"
        request = head(study) + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n" + \
            b"Content-Length: 0\r\n\r\n" + chunked
    else:
        request = head(study, "GET", "api/queue") + f"Content-Length: {len(smuggled)}\r\n\r\n".encode() + smuggled
    with connect(study) as s, s.makefile("rb") as f:
        s.sendall(request)
        status, headers, _ = read_response(f)
        assert headers["connection"] == "close" and closed(f)  # one answer, then the end: no second request
    assert status == (200 if framing == "a GET with a body" else 400)


def test_absolute_form_and_network_path_targets_are_refused(study):
    port = study.server.server_address[1]
    token = study.links["alice"]
    for target, expected in ((f"http://other.host/r/{token}/api/session", 400),
                             (f"http://127.0.0.1:{port}/r/{token}/api/session", 400),
                             (f"//other.host/r/{token}/api/session", 401),  # the stdlib makes it /other.host/r/...
                             (f"/r/{token}/api/session", 200)):
        with connect(study) as s, s.makefile("rb") as f:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            status, _, body = read_response(f)
        assert status == expected and (b"csrf" in body) == (expected == 200), target


@pytest.mark.parametrize("line", ["GET /r/{token}/api/session HTTP/1.1 extra", "GET /r/{token}/ HTTP/9.9",
                                  "GET /r/{token}/ JUNK/1.1", "BREW /r/{token}/ HTTP/1.1",
                                  "GET /r/{token}/api/session"])
def test_a_malformed_request_line_is_not_echoed(study, line):
    token = study.links["alice"]
    with connect(study) as s, s.makefile("rb") as f:
        s.sendall(line.format(token=token).encode() + b"\r\nHost: x\r\n\r\n")
        status, _, body = read_response(f)
    assert 400 <= status < 600 and token.encode() not in body and b"/r/" not in body
    assert set(json.loads(body)) == {"error"}


def test_a_trickling_request_is_dropped_at_its_deadline_but_an_idle_one_is_not(study):
    study.server.request_deadline = 0.6
    with connect(study) as idle, idle.makefile("rb") as idle_f, connect(study) as slow, slow.makefile("rb") as f:
        request = head(study, "GET", "api/session") + b"\r\n"
        started = time.monotonic()
        dropped = False
        for byte in request:  # one byte every 0.1 s: the socket timeout alone would never fire
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                dropped = True
                break
            time.sleep(0.1)
        assert dropped or closed(f, within=1.0)
        assert time.monotonic() - started < 5
        time.sleep(0.2)
        idle.sendall(request)  # waited longer than the deadline before its first byte: served
        assert read_response(idle_f)[0] == 200


def test_a_trickling_body_is_dropped_and_nothing_is_final_ratings(study):
    study.server.request_deadline = 0.6
    _, item = csrf_and_item(study)
    body = json.dumps({"item": item, "scores": GOOD}).encode()
    request = rating_post(study, body)
    with connect(study) as s, s.makefile("rb") as f:
        s.sendall(request[:-len(body)])
        try:
            for byte in body:
                s.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            pass
        assert f.read(1) == b"" or closed(f, within=1.0)
    assert final_ratings(study) == []


def test_connections_beyond_the_cap_get_503_and_a_freed_slot_is_reused(study):
    study.server.max_connections = 2
    first, second = connect(study), connect(study)
    try:
        time.sleep(0.2)
        with connect(study) as third, third.makefile("rb") as f:
            status, headers, body = read_response(f)
            assert status == 503 and headers["retry-after"] == "5" and closed(f)
            assert headers["content-security-policy"].startswith("default-src 'none'")
        first.close()
        deadline = time.monotonic() + 5
        while len(study.server.connections) >= 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        with connect(study) as fourth, fourth.makefile("rb") as f:
            fourth.sendall(head(study, "GET", "api/session") + b"\r\n")
            assert read_response(f)[0] == 200
    finally:
        first.close()
        second.close()
