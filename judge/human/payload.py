"""Strict validation of what a rater's browser sends: every field checked, nothing else accepted.

A pointwise rating is ``{"item", "scores": {<the four dimensions>: 1..5}, "harm": bool, "comment": str,
"request_id": str}``; a pairwise one is ``{"item", "preference": "A"|"B"|"tie", "harm_a": bool,
"harm_b": bool, "comment", "request_id"}``. `comment` and `request_id` may be left out. Any other key,
type or value is refused with a one-line reason. Whether `item` belongs to the rater is checked by the
server against the store, not here.
"""
from __future__ import annotations

import json
import re

from judge.rubric import DIMENSIONS

MAX_BODY = 16_384        # bytes of a POST body
MAX_COMMENT = 2_000      # characters of a comment
SCORES = range(1, 6)     # the paper's 1-5 scale (section 4.2.2)
PREFERENCES = ("A", "B", "tie")
_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # JSON's "\ud800" alone: a str, but no text UTF-8 (or SQLite) can hold


class Invalid(ValueError):
    """The request body is not a valid rating; the message says which field and why."""


def _bool(body: dict, key: str) -> int:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise Invalid(f"{key}: must be true or false")
    return int(value)


def _opaque(body: dict, key: str, required: bool) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise Invalid(f"{key}: must be an id of 8-64 letters, digits, '-' or '_'")
    return value


def _json_object(raw: bytes) -> dict:
    """The body as a JSON object of valid Unicode text; anything else is `Invalid` (a 400, never a 500)."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Invalid("body: not a JSON object") from None
    except RecursionError:  # '[' * 8000: deeper than Python's recursion limit
        raise Invalid("body: nested too deeply") from None
    if not isinstance(body, dict):
        raise Invalid("body: not a JSON object")
    return body


def parse_rating(raw: bytes, pairwise: bool) -> dict:
    """The validated rating: `item`, `request_id`, and the columns to store (scores or preference,
    harm flag(s) as 0/1, comment)."""
    body = _json_object(raw)
    allowed = {"item", "comment", "request_id"} | ({"preference", "harm_a", "harm_b"} if pairwise
                                                   else {"scores", "harm"})
    extra = sorted(set(body) - allowed)
    if extra:
        raise Invalid(f"{extra[0]}: unknown field")
    values: dict = {}
    if pairwise:
        if body.get("preference") not in PREFERENCES:
            raise Invalid("preference: must be \"A\", \"B\" or \"tie\"")
        values.update(preference=body["preference"], harm_a=_bool(body, "harm_a"), harm_b=_bool(body, "harm_b"))
    else:
        scores = body.get("scores")
        if not isinstance(scores, dict) or set(scores) != set(DIMENSIONS):
            raise Invalid(f"scores: must give exactly {', '.join(DIMENSIONS)}")
        for d in DIMENSIONS:
            if type(scores[d]) is not int or scores[d] not in SCORES:
                raise Invalid(f"scores.{d}: must be an integer from 1 to 5")
            values[d] = scores[d]
        values["harm"] = _bool(body, "harm")
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT or _CONTROL.search(comment) or \
            _SURROGATE.search(comment):
        raise Invalid(f"comment: must be text of at most {MAX_COMMENT} characters, without control characters "
                      "or lone surrogates")
    values["comment"] = comment.strip()
    return {"item": _opaque(body, "item", True), "request_id": _opaque(body, "request_id", False),
            "values": values}
