"""Grounding fields on hand-built answers, the diagnosis flip property, and GenMedGPT-5k scored against itself."""
from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from _evalkit_util import genmedgpt_records
from conftest import shared_file
from evalkit import GroundingScorer, load_disease_db, write_disease_db

DB_ROWS = [
    ("Panic disorder", ["Palpitations"], ["Depression screen (Depression screening)", "Electrocardiogram"],
     ["Alprazolam (Xanax)", "Lorazepam"]),
    ("Type 2 diabetes", ["Thirst"], ["Hemoglobin A1c measurement (Hemoglobin a1c test)", "Glucose measurement"],
     ["Metformin", "Insulin"]),
    ("Diabetes", ["Thirst"], ["Glucose measurement"], ["Insulin"]),
    ("Migraine", ["Headache"], ["Magnetic resonance imaging (Mri)"], ["Sumatriptan (Imitrex)"]),
]
REF = ("It sounds like panic disorder. We need a depression screen and an electrocardiogram. "
       "I will prescribe alprazolam.")


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> GroundingScorer:
    return GroundingScorer(load_disease_db(write_disease_db(tmp_path_factory.mktemp("db") / "db.csv", DB_ROWS)))


def test_every_field_on_a_partly_right_answer(scorer):
    resp = "Probably panic disorder; a depression screening and an MRI would help. Take Xanax and metformin."
    row = scorer.score(resp, REF)
    assert row["reference_condition"] == "Panic disorder" and row["conditions"] == ["Panic disorder"]
    assert row["diagnosis_correct"] == 1 and row["diagnosis_mentioned"] == 1
    assert row["tests"] == ["Depression screen (Depression screening)", "Magnetic resonance imaging (Mri)"]
    assert row["reference_tests"] == ["Depression screen (Depression screening)", "Electrocardiogram"]
    assert row["tests_recall"] == 1 / 2      # 1 of the reference's 2 tests
    assert row["tests_precision"] == 1 / 2   # MRI is not listed for panic disorder
    assert row["medications_recall"] == 1.0  # the reference names alprazolam only
    assert row["medications_precision"] == 1 / 2
    assert row["unsupported_medications"] == ["Metformin"]


def test_right_condition_named_second(scorer):
    row = scorer.score("Could be a migraine, or panic disorder.", REF)
    assert row["conditions"] == ["Migraine", "Panic disorder"]
    assert row["diagnosis_correct"] == 0 and row["diagnosis_mentioned"] == 1


def test_answer_naming_nothing(scorer):
    row = scorer.score("Please rest and drink water.", REF)
    assert row["conditions"] == [] and row["diagnosis_correct"] == 0 and row["diagnosis_mentioned"] == 0
    assert row["tests_recall"] == 0.0 and row["medications_recall"] == 0.0
    assert row["tests_precision"] is None and row["medications_precision"] is None  # nothing named: undefined
    assert row["unsupported_medications"] == []


def test_reference_without_tests_or_medications(scorer):
    row = scorer.score("Type 2 diabetes; take insulin.", "You may have type 2 diabetes.")
    assert row["tests_recall"] is None and row["medications_recall"] is None  # reference names none: undefined
    assert row["medications_precision"] == 1.0 and row["tests_precision"] is None


def test_longest_name_decides_the_diagnosis(scorer):
    ref = "You may have type 2 diabetes. A glucose measurement is needed."
    assert scorer.score("You may have diabetes.", ref)["diagnosis_correct"] == 0
    assert scorer.score("Sounds like type-2 diabetes.", ref)["diagnosis_correct"] == 1
    assert scorer.reference_condition(ref) == "Type 2 diabetes"


def test_ungrounded_reference(scorer):
    row = scorer.score("Panic disorder. Take lorazepam.", "Please see a doctor and take lorazepam.")
    assert row["reference_condition"] is None and row["conditions"] == ["Panic disorder"]
    assert all(row[f] is None for f in ("diagnosis_correct", "diagnosis_mentioned", "tests_recall", "tests_precision",
                                        "medications_recall", "medications_precision", "unsupported_medications"))
    assert row["medications"] == ["Lorazepam"] and row["reference_medications"] == ["Lorazepam"]


@pytest.fixture(scope="module")
def real_scorer() -> GroundingScorer:
    return GroundingScorer(load_disease_db(shared_file("disease-database.csv")))


@pytest.fixture(scope="module")
def references() -> list[str]:
    return [r["output"] for r in genmedgpt_records()]


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_replacing_the_condition_flips_diagnosis_correct(real_scorer, references, data):
    """Replace every mention of the reference condition by another database condition: correct -> wrong."""
    conditions = real_scorer.db.names()["condition"]
    ref = data.draw(st.sampled_from(references))
    truth = real_scorer.reference_condition(ref)
    assume(truth is not None)
    other = data.draw(st.sampled_from(conditions).filter(lambda c: c != truth))
    spans = [m for m in real_scorer.matcher.find(ref) if m.name == truth]
    answer = ref
    for m in reversed(spans):
        answer = answer[:m.start] + other + answer[m.end:]
    assume(real_scorer.named(answer)["condition"][:1] == [other])  # the swap did not merge into a longer name
    assert real_scorer.score(ref, ref)["diagnosis_correct"] == 1
    assert real_scorer.score(answer, ref)["diagnosis_correct"] == 0
    assert real_scorer.score(answer, ref)["diagnosis_mentioned"] == int(truth in real_scorer.named(answer)["condition"])


TEMPLATE = "Based on your symptoms, you may have {}. We should run some tests."


def test_every_condition_is_read_back_from_a_sentence(real_scorer):
    """Each of the 796 conditions, written into the same sentence as is or lower-cased, is the diagnosis."""
    for name in real_scorer.db.names()["condition"]:
        assert real_scorer.reference_condition(TEMPLATE.format(name)) == name
        assert real_scorer.score(TEMPLATE.format(name.lower()), TEMPLATE.format(name))["diagnosis_correct"] == 1


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_swapping_conditions_in_a_sentence_flips_diagnosis_correct(real_scorer, data):
    conditions = real_scorer.db.names()["condition"]
    a, b = data.draw(st.lists(st.sampled_from(conditions), min_size=2, max_size=2, unique=True))
    ref = TEMPLATE.format(a)
    assert real_scorer.score(ref, ref)["diagnosis_correct"] == 1
    assert real_scorer.score(TEMPLATE.format(b), ref)["diagnosis_correct"] == 0


@pytest.mark.slow
def test_genmedgpt_references_scored_against_themselves(real_scorer, references):
    rows = [real_scorer.score(ref, ref) for ref in references]
    grounded = [r for r in rows if r["reference_condition"] is not None]
    coverage = len(grounded) / len(rows)
    defined = {f: sum(r[f] is not None for r in grounded) for f in ("tests_recall", "medications_recall")}
    print(f"\nGenMedGPT-5k self-scores: {len(grounded)} of {len(rows)} references grounded "
          f"(coverage {coverage:.1%}); recall defined for {defined['tests_recall']} (tests) and "
          f"{defined['medications_recall']} (medications)")
    assert len(rows) == 5452 and coverage >= 0.80
    assert all(r["diagnosis_correct"] == 1 and r["diagnosis_mentioned"] == 1 for r in grounded)
    assert all(r["tests_recall"] in (None, 1.0) and r["medications_recall"] in (None, 1.0) for r in grounded)
    assert defined["tests_recall"] > 0 and defined["medications_recall"] > 0
    # Independent check of the coverage: a reference that holds a condition's name verbatim (whole words,
    # any case) is grounded, except where that text is part of a longer test, medication or condition name.
    names = real_scorer.db.names()["condition"]
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")\b", re.I)
    verbatim = [i for i, ref in enumerate(references) if pattern.search(ref)]
    assert len(grounded) >= 0.95 * len(verbatim)
