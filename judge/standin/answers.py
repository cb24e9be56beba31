"""What the loopback stand-in answers (`judge/standin/server.py`): a word-overlap heuristic, NOT A JUDGE.

`heuristic_scores` gives deterministic 1-5 scores: relevance from the share of the question's
content words (four letters or more, not stopwords) found in the answer, comprehensiveness from the
answer's length (one point per 12 words), helpfulness their rounded mean, accuracy fixed at 3 (a
heuristic cannot check facts). Every justification says so. `_answer` reads the judge's prompt
(single or pairwise) and writes the assistant message in the shape a scripted behaviour asks for:
plain JSON, `[[n]]` marks, JSON wrapped in prose, or an out-of-range score.
"""
from __future__ import annotations

import json
import re

from judge.rubric import DIMENSIONS

STOPWORDS = frozenset("that this with have from your what when there their they them been were will would "
                      "could should about which also into than then some such very more most much many "
                      "because after before does doing just only over hello doctor dear thank thanks".split())
LABEL = "STAND-IN HEURISTIC, NOT A JUDGE"
SERVED_MODEL = "standin-heuristic-NOT-A-JUDGE"  # reported as the serving model, so tables say what scored


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4 and w not in STOPWORDS]


def heuristic_scores(question: str, answer: str) -> tuple[dict, str]:
    """Deterministic 1-5 scores from word overlap and length, and a justification that says so."""
    q, a = set(_words(question)), _words(answer)
    overlap = len(q & set(a)) / len(q) if q else 0.0
    relevance = 1 + round(4 * overlap)
    comprehensiveness = 1 + min(4, len(answer.split()) // 12)  # one point per 12 words, at most 5
    scores = {"accuracy": 3, "comprehensiveness": comprehensiveness,
              "helpfulness": round((relevance + comprehensiveness) / 2), "relevance": relevance}
    why = (f"{LABEL}: {len(q & set(a))}/{len(q)} question words appear in the answer, "
           f"{len(answer.split())} words long; accuracy is fixed at 3.")
    return scores, why


def _section(text: str, title: str) -> str | None:
    match = re.search(rf"\[{re.escape(title)}\]\n(.*?)\n\[End of {re.escape(title.lower())}\]", text, flags=re.S)
    return match.group(1) if match else None


def _answer(body: dict, behaviour: str, position_bias: bool) -> str:
    """The assistant message content for an `ok`-like behaviour."""
    user = next((m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"), "")
    question = _section(user, "Patient question") or ""
    if _section(user, "Answer A") is not None:  # pairwise prompt
        sa, _ = heuristic_scores(question, _section(user, "Answer A") or "")
        sb, _ = heuristic_scores(question, _section(user, "Answer B") or "")
        total_a, total_b = sum(sa.values()), sum(sb.values())
        winner = "A" if position_bias or total_a > total_b else "B" if total_b > total_a else "tie"
        payload = {"winner": winner, "justification": f"{LABEL}: heuristic totals A={total_a}, B={total_b}."}
    else:
        scores, why = heuristic_scores(question, _section(user, "Answer to evaluate") or "")
        if behaviour == "out_of_range":
            scores["accuracy"] = 7
        payload = {**scores, "justification": why}
    if behaviour == "marks" and "winner" in payload:
        return f"My verdict: [[{'C' if payload['winner'] == 'tie' else payload['winner']}]]"
    if behaviour == "marks":
        return "\n".join(f"{d.capitalize()}: [[{payload[d]}]]" for d in DIMENSIONS) + f"\n{payload['justification']}"
    if behaviour == "json_in_text":
        return f"Here is my evaluation:\n{json.dumps(payload)}\nI hope this helps."
    return json.dumps(payload)
