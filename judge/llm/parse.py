"""Read the judge's reply: structured JSON, else JSON inside text, else `[[n]]`-style marks. Never impute."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from judge.rubric import DIMENSIONS


@dataclass(frozen=True)
class Parsed:
    """Outcome of reading one reply.

    Attributes:
        value: `{dimension: int}` for scores, or "A" / "B" / "tie" for a verdict; None when unreadable.
        justification: the judge's short reason, when given.
        method: "json", "json_in_text" or "marks"; None on failure.
        problem: why the reply could not be read (empty on success).
    """

    value: dict | str | None
    justification: str | None = None
    method: str | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None


def _score(value) -> int | None:
    """An integer score 1-5 from 4, 4.0, "4" or {"score": 4}; None for anything else (4.5, 7, "good")."""
    if isinstance(value, dict):
        value = value.get("score", value.get("rating"))
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 1 <= value <= 5 else None


def _scores_from_dict(obj) -> tuple[dict | None, str | None, str]:
    """(scores, justification, problem) from a decoded JSON value; keys are matched case-insensitively."""
    if not isinstance(obj, dict):
        return None, None, "JSON is not an object"
    lower = {str(k).strip().lower(): v for k, v in obj.items()}
    if isinstance(lower.get("scores"), dict):  # {"scores": {...}, "justification": ...}
        lower = {**{str(k).strip().lower(): v for k, v in lower["scores"].items()}, **lower}
    scores, bad = {}, []
    for dim in DIMENSIONS:
        score = _score(lower.get(dim))
        if score is None:
            bad.append(f"{dim}={lower.get(dim)!r}")
        scores[dim] = score
    if bad:
        return None, None, "missing or invalid score(s): " + ", ".join(bad)
    just = lower.get("justification", lower.get("reason", lower.get("explanation")))
    return scores, (str(just) if just is not None else None), ""


def _verdict_from_dict(obj) -> tuple[str | None, str | None, str]:
    """(verdict, justification, problem) from a decoded JSON value."""
    if not isinstance(obj, dict):
        return None, None, "JSON is not an object"
    lower = {str(k).strip().lower(): v for k, v in obj.items()}
    verdict = _verdict(str(lower.get("winner", lower.get("verdict", ""))))
    if verdict is None:
        return None, None, f"invalid winner {lower.get('winner')!r}"
    just = lower.get("justification", lower.get("reason"))
    return verdict, (str(just) if just is not None else None), ""


def _verdict(text: str) -> str | None:
    """"A", "B" or "tie" from a winner field or mark ("C", "equal" and "draw" mean a tie)."""
    text = text.strip().strip("[]'\" ").lower()
    return {"a": "A", "b": "B", "tie": "tie", "c": "tie", "equal": "tie", "draw": "tie"}.get(text)


def _json_objects(text: str):
    """Every JSON object embedded in `text`, in order (after stripping ``` fences)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        yield obj


def _strip_fences(text: str) -> str:
    text = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.S | re.I)
    return fenced.group(1) if fenced else text


def _read(text: str, from_dict, from_marks) -> Parsed:
    """The three readings in order: whole reply as JSON, JSON objects inside it, then marks."""
    if not text or not text.strip():
        return Parsed(None, problem="empty reply")
    problem = ""
    try:
        obj = json.loads(_strip_fences(text))
    except ValueError:
        problem = "reply is not JSON"
    else:
        value, just, problem = from_dict(obj)
        if value is not None:
            return Parsed(value, just, "json")
    for obj in _json_objects(text):
        value, just, why = from_dict(obj)
        if value is not None:
            return Parsed(value, just, "json_in_text")
        problem = problem or why
    value, why = from_marks(text)
    if value is not None:
        return Parsed(value, None, "marks")
    return Parsed(None, problem=f"{problem}; {why}" if problem else why)


def _score_marks(text: str) -> tuple[dict | None, str]:
    """`Accuracy: [[4]]`, `Accuracy: 4/5` or `Accuracy - 4`, once per dimension, all four present."""
    scores = {}
    for dim in DIMENSIONS:
        pattern = rf"\b{dim}\b[^\w\[\n]{{0,6}}(?:\[\[\s*([1-5])\s*\]\]|([1-5])(?:\s*(?:/|out of)\s*5)?(?![\w.]))"
        found = {int(a or b) for a, b in re.findall(pattern, text, flags=re.I)}
        if len(found) != 1:
            return None, f"no unambiguous score for {dim} in the text"
        scores[dim] = found.pop()
    return scores, ""


def _verdict_marks(text: str) -> tuple[str | None, str]:
    """`[[A]]`, `[[B]]`, `[[C]]` or `[[tie]]`, exactly one distinct verdict."""
    found = {_verdict(m) for m in re.findall(r"\[\[\s*(A|B|C|tie)\s*\]\]", text, flags=re.I)}
    if len(found) != 1:
        return None, "no unambiguous [[A]]/[[B]]/[[tie]] verdict in the text"
    return found.pop(), ""


def parse_scores(text: str) -> Parsed:
    """The four 1-5 scores from a pointwise reply, or a failure with the reason."""
    return _read(text, _scores_from_dict, _score_marks)


def parse_verdict(text: str) -> Parsed:
    """"A", "B" or "tie" from a pairwise reply, or a failure with the reason."""
    return _read(text, _verdict_from_dict, _verdict_marks)


def _fits(value, spec: dict) -> bool:
    """Whether a decoded JSON value fits one property of the judge's schemas (integer/string, enum)."""
    kind = spec.get("type")
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return False
    if kind == "string" and not isinstance(value, str):
        return False
    return "enum" not in spec or value in spec["enum"]


def reply_format(requested: str, text: str, schema: dict) -> str:
    """The structured-output mode the server actually honoured in this reply.

    "json_schema" when the whole reply is a JSON object that fits `schema` (the required keys, no
    other key, the types and enums) and that mode was asked for; "json_object" when the whole reply is
    a JSON object (asked for with either mode); "none" otherwise: prose, a fenced or embedded object,
    marks, an empty reply, or no mode asked for. A server that ignores `response_format` shows here.
    """
    if requested == "none":
        return "none"
    try:
        obj = json.loads(text)
    except (TypeError, ValueError):
        return "none"
    if not isinstance(obj, dict):
        return "none"
    props = schema.get("properties", {})
    fits = (set(schema.get("required", [])) <= set(obj) <= set(props)
            and all(_fits(v, props[k]) for k, v in obj.items()))
    return "json_schema" if requested == "json_schema" and fits else "json_object"
