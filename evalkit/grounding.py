"""Clinical grounding: score each response against the disease database its reference was generated from.

Per (id, model), with names found by ``evalkit.names.NameMatcher`` (its rules are in that module):

* ``reference_condition``: the first database condition the reference names. An item whose reference
  names none is *ungrounded*: its score fields are null and it is left out of Table 3 (and listed).
* ``conditions``: the conditions the response names, in order of first mention.
* ``diagnosis_correct``: 1 when the response's first condition is the reference condition, else 0
  (also 0 when it names none). ``diagnosis_mentioned``: 1 when it names it anywhere.
* ``tests_recall``: of the database tests the reference names, the share the response names.
  ``tests_precision``: of the database tests the response names, the share the database lists for the
  reference condition. ``medications_recall`` / ``medications_precision``: the same for medications.
* ``unsupported_medications``: the database medications the response names that the database does
  not list for the reference condition, in order.

A ratio with a zero denominator is undefined and null, never 0 or 1: recall when the reference names
no test (medication), precision when the response names none. Table 3 counts the nulls per model.
"""
from __future__ import annotations

import sys
from typing import Sequence

from tqdm.auto import tqdm

from evalkit.disease_db import Condition, DiseaseDB  # noqa: F401  (re-exported)
from evalkit.names import NameMatcher
from evalkit.records import Selection, System, check_scoring_input

FIELDS = ("diagnosis_correct", "diagnosis_mentioned", "tests_recall", "tests_precision",
          "medications_recall", "medications_precision")
BINARY_FIELDS = ("diagnosis_correct", "diagnosis_mentioned")


def _ratio(hits: int, total: int) -> float | None:
    return None if total == 0 else hits / total


class GroundingScorer:
    """Names conditions, tests and medications in answers and scores them against ``db``.

    References are matched once and cached, since every system shares them.
    """

    def __init__(self, db: DiseaseDB):
        self.db = db
        self.matcher = NameMatcher(db.names())
        self.listed = {c.name: (frozenset(c.tests), frozenset(c.medications)) for c in db.conditions}
        self._references: dict[str, dict[str, list[str]]] = {}

    def named(self, text: str) -> dict[str, list[str]]:
        """``{"condition", "test", "medication"}`` -> the names ``text`` mentions, in order."""
        return self.matcher.named(text)

    def _reference(self, reference: str) -> dict[str, list[str]]:
        named = self._references.get(reference)
        if named is None:
            named = self._references[reference] = self.matcher.named(reference)
        return named

    def reference_condition(self, reference: str) -> str | None:
        """The first database condition ``reference`` names, or None (the item is ungrounded)."""
        conditions = self._reference(reference)["condition"]
        return conditions[0] if conditions else None

    def score(self, response: str, reference: str) -> dict:
        """The grounding fields of one answer (see the module docstring); null fields when ungrounded."""
        ref, got = self._reference(reference), self.matcher.named(response)
        truth = ref["condition"][0] if ref["condition"] else None
        row = {"reference_condition": truth, "conditions": got["condition"]}
        if truth is None:
            row.update(dict.fromkeys(FIELDS), unsupported_medications=None)
        else:
            listed_tests, listed_meds = self.listed[truth]
            tests, meds = got["test"], got["medication"]
            row.update({
                "diagnosis_correct": int(bool(got["condition"]) and got["condition"][0] == truth),
                "diagnosis_mentioned": int(truth in got["condition"]),
                "tests_recall": _ratio(len(set(ref["test"]) & set(tests)), len(ref["test"])),
                "tests_precision": _ratio(sum(t in listed_tests for t in tests), len(tests)),
                "medications_recall": _ratio(len(set(ref["medication"]) & set(meds)), len(ref["medication"])),
                "medications_precision": _ratio(sum(m in listed_meds for m in meds), len(meds)),
                "unsupported_medications": [m for m in meds if m not in listed_meds],
            })
        row.update(tests=got["test"], medications=got["medication"], reference_tests=ref["test"],
                   reference_medications=ref["medication"])
        return row


def ground_systems(systems: Sequence[System], selection: Selection, scorer: GroundingScorer,
                   progress: bool = True) -> tuple[list[dict], list[dict]]:
    """Score every kept item of every system.

    Returns:
        rows: ``{"id", "model", **GroundingScorer.score(...)}``, system by system (``--pairs`` order),
            items in ``selection.ids`` order; ungrounded items included, with null score fields.
        ungrounded: one ``{"id", "reason": "ungrounded", "file", "line"}`` per item whose reference
            names no database condition (the same for every system: the references are equal).
    """
    check_scoring_input("ground_systems", systems, selection)
    ungrounded = []
    for item_id in selection.ids:
        rec = systems[0].records[item_id]  # a kept id is in every file, with the same reference
        if scorer.reference_condition(rec.reference) is None:
            ungrounded.append({"id": item_id, "reason": "ungrounded", "file": rec.path, "line": rec.line})
    rows = []
    with tqdm(total=len(systems) * len(selection.ids), desc="grounding", unit="pair", file=sys.stderr,
              disable=not progress) as bar:
        for system in systems:
            for item_id in selection.ids:
                rec = system.records[item_id]
                rows.append({"id": item_id, "model": system.model, **scorer.score(rec.response, rec.reference)})
                bar.update()
    return rows, ungrounded
