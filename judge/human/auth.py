"""Who is asking, and may they: link tokens, CSRF tokens, request-origin checks, response headers.

* A rater's link holds a 256-bit token from `secrets`. The store keeps only its SHA-256, so the store
  file holds no secret; a token is found by hashing what was presented and comparing it with *every*
  rater's hash using `hmac.compare_digest` (constant time, and the same work whoever matches).
* POSTs must carry the rater's CSRF token (random per server start, handed out by the session API) in
  an `X-CSRF-Token` header: a cross-site form cannot set headers, and a cross-site script that tries
  needs a CORS preflight, which this server never grants. On top, a POST whose `Origin` differs from
  the server's own origin, or whose `Sec-Fetch-Site` is not `same-origin`, is refused, and the
  `Host` header must name this server (against DNS rebinding). No cookies are used, so a cross-site
  request has no ambient credential to ride on.
* Every response carries a Content-Security-Policy without inline script, `nosniff`, `no-store`
  caching, no referrer, and framing is forbidden.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def new_token() -> str:
    """A fresh link token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The SHA-256 hex digest that the store keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Gate:
    """The raters' token hashes and this process's CSRF tokens."""

    def __init__(self, hashes: dict[str, str]):
        self._hashes = dict(hashes)
        self._csrf = {name: secrets.token_urlsafe(24) for name in hashes}

    def rater_for(self, token: str) -> str | None:
        """The rater whose link token this is, or None; compares with every rater in constant time."""
        presented = token_hash(token).encode()
        found = None
        for name, stored in self._hashes.items():
            if hmac.compare_digest(presented, stored.encode()):
                found = name
        return found

    def csrf_token(self, rater: str) -> str:
        return self._csrf[rater]

    def csrf_ok(self, rater: str, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self._csrf[rater].encode())


def allowed_hosts(host: str, port: int) -> set[str] | None:
    """The `Host` header values this server answers to; None (any) when bound to every interface."""
    if host in ("", "0.0.0.0", "::"):
        return None
    names = {host}
    try:
        if ipaddress.ip_address(host).is_loopback:
            names |= {"127.0.0.1", "localhost", "[::1]"}
        if ipaddress.ip_address(host).version == 6:
            names.add(f"[{host}]")
    except ValueError:
        if host == "localhost":
            names |= {"127.0.0.1", "[::1]"}
    return {f"{n}:{port}" for n in names} | ({n for n in names} if port == 80 else set())


def host_ok(header: str | None, allowed: set[str] | None) -> bool:
    """Whether the `Host` header names this server."""
    if header is None:
        return False
    return allowed is None or header.lower() in allowed


def same_origin_post(headers, host_header: str) -> str | None:
    """Why a POST looks cross-site (a short reason), or None when it is same-origin.

    `Origin`, when sent (browsers always send it on POST), must be `http(s)://<Host>`;
    `Sec-Fetch-Site`, when sent, must be `same-origin`.
    """
    origin = headers.get("Origin")
    if origin is not None and origin.lower() not in (f"http://{host_header}".lower(), f"https://{host_header}".lower()):
        return "cross-origin request refused"
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return "cross-site request refused"
    return None
