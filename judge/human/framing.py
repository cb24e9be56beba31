"""What a request must look like before it is routed: its target, and how its body is delimited.

A request is read off a kept-alive connection, so a body whose length two parties read differently is
the start of a smuggled second request (RFC 9112 section 6.3). Only one reading is accepted here: the
target in origin-form (`/r/<token>/...`, never `http://other.host/...`), no `Transfer-Encoding`, and at
most one `Content-Length` of plain ASCII digits. Anything else is refused before the request is routed
and the connection is closed after the answer.
"""
from __future__ import annotations

import re

_LENGTH = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also accepts "²" and "٣"


class Refused(Exception):
    """The request cannot be read safely; `status` and the one-line reason are its answer."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def target_path(target: str) -> str | None:
    """The path of an origin-form request target (`/r/abc/api/queue?x` -> `/r/abc/api/queue`), else None.

    Absolute-form (`http://host/path`), a network-path reference (`//host/path`), authority-form and
    asterisk-form targets are None: this server is nobody's proxy.
    """
    if not target.startswith("/") or target.startswith("//"):
        return None
    return target.split("?", 1)[0].split("#", 1)[0]


def body_length(headers) -> int | None:
    """The length of the request's body from its framing headers; None when it has no `Content-Length`.

    Raises:
        Refused: 400 for a `Transfer-Encoding` (chunked or any other: bodies come with a length), for
            more than one `Content-Length`, and for one that is not a plain decimal number.
    """
    if headers.get_all("Transfer-Encoding"):
        raise Refused(400, "Transfer-Encoding is not accepted; send the body with one Content-Length")
    lengths = headers.get_all("Content-Length") or []
    if len(lengths) > 1:
        raise Refused(400, "more than one Content-Length")
    if not lengths:
        return None
    value = lengths[0].strip(" \t")
    if not _LENGTH.fullmatch(value):
        raise Refused(400, "Content-Length must be a decimal number of at most 18 digits")
    return int(value)
