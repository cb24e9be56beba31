"""What each API call answers, as JSON-ready dicts; the HTTP layer (server.py) only routes to it.

Blindness is decided here: an item's JSON holds its opaque id, position, the question, the reference
(when the study shows it) and the answer text(s) labelled "A"/"B" in pairwise mode. The record id and
the system's name never leave the store.
"""
from __future__ import annotations

from typing import Callable

from judge.human.auth import Gate
from judge.human.store import Store
from judge.rubric import DEFINITIONS, DIMENSIONS, SCALE, TITLES


class Forbidden(Exception):
    """The request is valid but the rater may not do it (an item outside their queue)."""


def scale_labels() -> list[dict]:
    """The rubric's 1-5 scale as [{"value": 1, "label": "very poor"}, ...]."""
    pairs = (part.split(" = ", 1) for part in SCALE.split(", "))
    return [{"value": int(v), "label": label} for v, label in pairs]


class RatingApp:
    """The study as the raters see it: one object shared by all request threads."""

    def __init__(self, store: Store, gate: Gate, log: Callable[[str], None] | None = None):
        self.store, self.gate, self.log = store, gate, log
        settings = store.settings()
        self.pairwise = settings["mode"] == "pairwise"
        self.with_reference = settings["with_reference"]

    def _progress(self, rater: str) -> tuple[list, int]:
        queue = self.store.queue(rater)
        return queue, sum(row["revisions"] > 0 for row in queue)

    @staticmethod
    def _next_unrated(queue, after: int = 0) -> int | None:
        """Position of the first unrated item after `after` (wrapping round), or None when all are rated."""
        unrated = [row["position"] for row in queue if row["revisions"] == 0]
        later = [p for p in unrated if p > after]
        return (later or unrated or [None])[0]

    def session(self, rater: str) -> dict:
        queue, rated = self._progress(rater)
        return {"rater": rater, "mode": "pairwise" if self.pairwise else "pointwise", "total": len(queue),
                "rated": rated, "next": self._next_unrated(queue), "with_reference": self.with_reference,
                "dimensions": [{"key": d, "title": TITLES[d], "definition": DEFINITIONS[d]} for d in DIMENSIONS],
                "scale": scale_labels(), "csrf": self.gate.csrf_token(rater)}

    def queue(self, rater: str) -> dict:
        return {"items": [{"item": row["item"], "position": row["position"], "rated": row["revisions"] > 0}
                          for row in self.store.queue(rater)]}

    def item(self, rater: str, item: str) -> dict | None:
        """One item of the rater's queue, or None when `item` is not theirs."""
        row = self.store.assignment(rater, item)
        if row is None:
            return None
        self.store.mark_shown(item)
        if self.pairwise:
            a = self.store.answer(row["record_id"], row["system_a"])
            b = self.store.answer(row["record_id"], row["system_b"])
            first, answers = a, [{"side": "A", "text": a["response"]}, {"side": "B", "text": b["response"]}]
        else:
            first = self.store.answer(row["record_id"], row["system"])
            answers = [{"side": "", "text": first["response"]}]
        latest = self.store.latest(item)
        total = len(self.store.queue(rater))
        return {"item": item, "position": row["position"], "total": total, "question": first["prompt"],
                "reference": first["reference"] if self.with_reference else None, "answers": answers,
                "rating": self._rating_json(latest), "revisions": latest["revision"] if latest else 0}

    def _rating_json(self, row) -> dict | None:
        if row is None:
            return None
        if self.pairwise:
            return {"preference": row["preference"], "harm_a": bool(row["harm_a"]), "harm_b": bool(row["harm_b"]),
                    "comment": row["comment"]}
        return {"scores": {d: row[d] for d in DIMENSIONS}, "harm": bool(row["harm"]), "comment": row["comment"]}

    def rate(self, rater: str, rating: dict) -> dict:
        """Store a validated rating (see payload.parse_rating) of one of the rater's items."""
        row = self.store.assignment(rater, rating["item"])
        if row is None:
            raise Forbidden("not your item")
        revision = self.store.save_rating(rater, rating["item"], rating["values"], rating["request_id"])
        queue, rated = self._progress(rater)
        if self.log is not None:
            note = "" if revision == 1 else f" (revision {revision} of item {row['position']})"
            self.log(f"{rater}: {rated} of {len(queue)} rated{note}")
        return {"saved": True, "revision": revision, "rated": rated, "total": len(queue),
                "next": self._next_unrated(queue, row["position"])}
