"""The report's verdict on the paper's paradox (style learned, medicine not), from synthetic Table 1 / Table 3 inputs
built with evalkit's own paired tests, both ways, at the thresholds, and when a table is missing."""
from __future__ import annotations

import json

import numpy as np
import pytest

from evalkit.score import METRICS
from evalkit.table import compare_scores, paired_tests
from pipeline import paradox
from pipeline.report import build
from pipeline.report_md import _summary

N = 120  # the held-out pairs


def table1(shift: float, seed: int = 0) -> dict:
    """Track A's Table 1 dict: base scores, and fine-tuned ones moved by `shift` per item plus noise."""
    rng = np.random.default_rng(seed)
    metrics = {}
    for m in METRICS:
        base = rng.uniform(0.05, 0.3, N)
        tuned = base + shift + rng.normal(0, 0.02, N)
        metrics[m] = compare_scores(base, tuned, seed=0, n_bootstrap=2000, n_permutations=200)
    return {"metrics": list(METRICS), "n": N, "baseline": "base",
            "comparisons": [{"model": "finetuned", "baseline": "base", "metrics": metrics}]}


def table3(base_right: int, tuned_right: int, both_right: int | None = None) -> dict:
    """Table 3's dict for diagnosis_correct: `base_right` / `tuned_right` of N answers name the right condition
    first, `both_right` of the items for both (default: as many as can be)."""
    both = min(base_right, tuned_right) if both_right is None else both_right
    x = np.zeros(N)
    y = np.zeros(N)
    x[:base_right] = 1
    y[:both] = 1
    y[base_right:base_right + tuned_right - both] = 1
    assert x.sum() == base_right and y.sum() == tuned_right
    cell = {"paired_mean_difference": float((y - x).mean()), **paired_tests(x, y, seed=0, n_bootstrap=2000,
                                                                              n_permutations=200)}
    return {"n": N, "baseline": "base",
            "systems": [{"model": name, "proportions": {"diagnosis_correct": {"successes": int(v.sum()), "n": N,
                                                                              "proportion": float(v.mean())}}}
                        for name, v in (("base", x), ("finetuned", y))],
            "comparisons": [{"model": "finetuned", "baseline": "base", "columns": {"diagnosis_correct": cell}}]}


def test_style_without_medicine_is_the_paradox():
    v = paradox.style_vs_medicine(table1(0.05), table3(15, 16))
    assert v["verdict"] == "paradox" and v["style"]["metrics_above_zero"] == list(METRICS)
    assert v["medicine"]["base"] == 15 / N and v["medicine"]["finetuned"] == 16 / N
    assert v["sentence"].startswith("The paper's paradox holds here: the fine-tuned model learned the style but "
                                    "not the medicine: its paired 95% CI of fine-tuned minus base lies above zero on "
                                    "5 of 5 Track A metrics (BLEU")
    assert "named first in 12.5% of the base model's answers and 13.3% of the fine-tuned model's (+0.8 points" in \
        v["sentence"]


def test_style_and_medicine_is_not_the_paradox():
    v = paradox.style_vs_medicine(table1(0.05), table3(20, 60))
    assert v["verdict"] == "both" and v["medicine"]["learned"] and v["medicine"]["ci95"][0] > 0
    assert v["sentence"].startswith("Not the paper's paradox: the fine-tuned model learned the style and the "
                                    "medicine: its paired 95% CI")
    assert "16.7% of the base model's answers and 50.0% of the fine-tuned model's (+33.3 points" in v["sentence"]


def test_neither_and_medicine_only():
    assert paradox.style_vs_medicine(table1(0.0, seed=3), table3(15, 15))["verdict"] == "neither"
    v = paradox.style_vs_medicine(table1(-0.05), table3(10, 60))
    assert v["verdict"] == "medicine only" and v["style"]["metrics_above_zero"] == []
    assert "lies above zero on 0 of 5 Track A metrics, while" in v["sentence"]


def test_the_thresholds_decide():
    """A significant rise smaller than MEDICINE_MIN_RISE is no medicine; a large rise with a CI reaching zero
    neither; style needs STYLE_MIN_METRICS metrics."""
    small = table3(10, 14, both_right=10)  # +4 points, every discordant pair favours the fine-tuned model
    assert small["comparisons"][0]["columns"]["diagnosis_correct"]["bootstrap_ci95"][0] > 0
    assert paradox.style_vs_medicine(table1(0.05), small)["verdict"] == "paradox"
    noisy = table3(30, 37, both_right=18)  # +5.8 points, but discordant both ways: the CI reaches below zero
    assert noisy["comparisons"][0]["columns"]["diagnosis_correct"]["bootstrap_ci95"][0] <= 0
    v = paradox.style_vs_medicine(table1(0.05), noisy)
    assert v["verdict"] == "paradox" and "learned the style but not measurably the medicine: " in v["sentence"]
    assert "(+5.8 points, paired 95% CI [" in v["sentence"]
    assert "style but not the medicine: " in paradox.style_vs_medicine(table1(0.05), small)["sentence"]
    two = table1(0.05)
    for m in METRICS[2:]:  # only two metrics keep a CI above zero
        two["comparisons"][0]["metrics"][m]["bootstrap_ci95"] = [-0.01, 0.02]
    v = paradox.style_vs_medicine(two, table3(15, 16))
    assert v["verdict"] == "neither" and len(v["style"]["metrics_above_zero"]) == 2 < paradox.STYLE_MIN_METRICS


@pytest.mark.parametrize("t1, t3, missing", [(None, "t3", "Track A"), ("t1", None, "grounding"),
                                             (None, None, "Track A and grounding")])
def test_undecided_without_a_table(t1, t3, missing):
    v = paradox.style_vs_medicine(table1(0.05) if t1 else None, table3(15, 16) if t3 else None)
    assert v["verdict"] == "undecided" and v["sentence"].endswith(f"cannot be decided: {missing} did not run.")


def test_the_report_says_it_from_its_own_files(tmp_path):
    """report.json carries the verdict computed from the run folder's tables, and the summary leads with it."""
    (tmp_path / "track_a").mkdir()
    (tmp_path / "grounding").mkdir()
    for learned, (b, f) in ((False, (15, 16)), (True, (20, 60))):
        (tmp_path / "track_a" / "table1.json").write_text(json.dumps(table1(0.05)))
        (tmp_path / "grounding" / "table3.json").write_text(json.dumps(table3(b, f)))
        d = build(tmp_path, {"config": {"preset": "smollm2"}, "stages": {}})
        assert d["style_vs_medicine"]["verdict"] == ("both" if learned else "paradox")
        lines = _summary({**d, "table1": None, "table2": None})
        assert lines[3] == f"- **Style or medicine?** {d['style_vs_medicine']['sentence']}"
        assert ("The paper's paradox holds here" in lines[3]) is not learned
