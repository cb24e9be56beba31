"""Reading judge replies: JSON, JSON inside text, [[n]] marks, and failures that never impute a score."""
import pytest

from judge.llm.parse import parse_scores, parse_verdict

FULL = {"accuracy": 4, "comprehensiveness": 3, "helpfulness": 5, "relevance": 2}


@pytest.mark.parametrize("text, method", [
    ('{"accuracy": 4, "comprehensiveness": 3, "helpfulness": 5, "relevance": 2, "justification": "fine"}', "json"),
    ('```json\n{"Accuracy": "4", "Comprehensiveness": 3.0, "Helpfulness": 5, "Relevance": 2}\n```', "json"),
    ('{"scores": {"accuracy": {"score": 4}, "comprehensiveness": 3, "helpfulness": 5, "relevance": 2}}', "json"),
    ('Here you go: {"accuracy": 4, "comprehensiveness": 3, "helpfulness": 5, "relevance": 2} Thanks!', "json_in_text"),
    ('{"note": 1} then {"accuracy": 4, "comprehensiveness": 3, "helpfulness": 5, "relevance": 2}', "json_in_text"),
    ("Accuracy: [[4]]\nComprehensiveness: [[3]]\nHelpfulness: [[5]]\nRelevance: [[2]]", "marks"),
    ("Accuracy: 4/5. Comprehensiveness - 3 out of 5; Helpfulness: 5\nRelevance: 2", "marks"),
])
def test_accepted_forms(text, method):
    parsed = parse_scores(text)
    assert parsed.ok and parsed.value == FULL and parsed.method == method


@pytest.mark.parametrize("text", [
    "",
    "The answer is good and helpful.",
    '{"accuracy": 4, "comprehensiveness": 3, "helpfulness": 5}',  # one dimension missing
    '{"accuracy": 7, "comprehensiveness": 3, "helpfulness": 5, "relevance": 2}',  # out of range
    '{"accuracy": 4.5, "comprehensiveness": 3, "helpfulness": 5, "relevance": 2}',  # not an integer
    '{"accuracy": true, "comprehensiveness": 3, "helpfulness": 5, "relevance": 2}',  # bool is not a score
    "Accuracy: [[4]] Accuracy: [[2]] Comprehensiveness: [[3]] Helpfulness: [[5]] Relevance: [[2]]",  # ambiguous
    "Accuracy: 4.5 Comprehensiveness: 3 Helpfulness: 5 Relevance: 2",
])
def test_failures_are_not_imputed(text):
    parsed = parse_scores(text)
    assert not parsed.ok and parsed.value is None and parsed.problem


def test_justification_kept():
    parsed = parse_scores('{"accuracy": 1, "comprehensiveness": 1, "helpfulness": 1, "relevance": 1, '
                          '"justification": "Unsafe advice."}')
    assert parsed.justification == "Unsafe advice."


@pytest.mark.parametrize("text, verdict", [
    ('{"winner": "A", "justification": "x"}', "A"), ('{"winner": "tie"}', "tie"),
    ("After thought, [[B]]", "B"), ("Equal: [[C]]", "tie"), ("[[tie]]", "tie"),
])
def test_verdicts(text, verdict):
    assert parse_verdict(text).value == verdict


@pytest.mark.parametrize("text", ["[[A]] or maybe [[B]]", '{"winner": "both"}', "A is better"])
def test_bad_verdicts(text):
    assert not parse_verdict(text).ok
