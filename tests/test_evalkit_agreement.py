"""Agreement analysis between the tracks (evalkit.agreement) and its rank correlations (evalkit.stats):
hand-made vectors and published worked examples."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from evalkit import agreement as ag
from evalkit.stats import Correlation, kendall_tau_b, spearman


def test_spearman_by_hand():
    # No ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)); ranks of y are (2,1,4,3,5) -> d = (1,1,1,1,0) -> sum 4.
    r = spearman([1, 2, 3, 4, 5], [20, 10, 40, 30, 50])
    assert r.stat == pytest.approx(1 - 6 * 4 / (5 * 24))
    t = r.stat * math.sqrt(3 / (1 - r.stat ** 2))
    assert r.p == pytest.approx(2 * stats.t.sf(t, 3))
    assert spearman([1, 2, 3], [3, 2, 1]).stat == -1.0


def test_kendall_by_hand():
    # Pairs of (1,2,3,4) vs (1,3,2,4): 5 concordant, 1 discordant -> tau = 4/6.
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]).stat == pytest.approx(4 / 6)
    # Ties in y: x = (1,2,3), y = (1,1,2): C = 2, D = 0, n0 = 3, n1 = 0, n2 = 1 -> 2 / sqrt(3 * 2).
    assert kendall_tau_b([1, 2, 3], [1, 1, 2]).stat == pytest.approx(2 / math.sqrt(6))


def test_kendall_worked_example_with_ties():
    """Kendall's tau-b on the tied example of scipy's and R's documentation (x and y with ties)."""
    x, y = [12, 2, 1, 12, 2], [1, 4, 7, 1, 0]
    assert kendall_tau_b(x, y).stat == pytest.approx(-0.47140452079103173)  # scipy.stats.kendalltau docs


def test_constant_or_short_input_is_undefined_not_nan():
    assert spearman([1, 1, 1, 1], [1, 2, 3, 4]) == Correlation(None, None, 4)
    assert kendall_tau_b([1, 2], [2, 1]) == Correlation(None, None, 2)


def _scores(table: dict) -> list[dict]:
    """{(id, model): (bleu, ...)} -> scores.jsonl rows with every metric equal to the given value."""
    return [{"id": i, "model": m, **{k: v for k in ag.METRICS}} for (i, m), v in table.items()]


def _judged(table: dict, status: str = "ok") -> list[dict]:
    return [{"id": i, "model": m, "status": status, **{d: v for d in ag.DIMENSIONS}} for (i, m), v in table.items()]


def test_preference_agreement_counts_ties_apart():
    # item: (metric base, metric ft, judge base, judge ft)
    items = {"1": (0.1, 0.5, 3, 4),   # both prefer ft: agree
             "2": (0.5, 0.1, 4, 3),   # both prefer base: agree
             "3": (0.1, 0.5, 4, 2),   # metric ft, judge base: disagree
             "4": (0.2, 0.2, 3, 4),   # metric tie
             "5": (0.1, 0.3, 3, 3),   # judge tie
             "6": (0.3, 0.3, 2, 2)}   # both tie
    metrics = ag.metric_scores(_scores({(i, m): v[k] for i, v in items.items() for k, m in ((0, "base"), (1, "finetuned"))}))
    judge = ag.judge_scores(_judged({(i, m): v[k] for i, v in items.items() for k, m in ((2, "base"), (3, "finetuned"))}))
    ids = ag.paired_items(metrics, judge, "base", "finetuned")
    assert ids == ["1", "2", "3", "4", "5", "6"]
    c = ag.preference_agreement(metrics, judge, ids, "base", "finetuned")["bleu"]["accuracy"]
    assert c == {"n": 6, "agree": 2, "disagree": 1, "metric_tie": 1, "judge_tie": 1, "both_tie": 1,
                 "agreement_rate": pytest.approx(2 / 3)}


def test_judge_scores_average_repeats_and_drop_failures():
    rows = [{"id": "1", "model": "base", "status": "ok", "accuracy": 2, "comprehensiveness": 3, "helpfulness": 4, "relevance": 5},
            {"id": "1", "model": "base", "status": "ok", "accuracy": 4, "comprehensiveness": 3, "helpfulness": 4, "relevance": 5},
            {"id": "1", "model": "base", "status": "parse_failure", "accuracy": None, "comprehensiveness": None,
             "helpfulness": None, "relevance": None},
            {"id": "2", "model": "base", "status": "error", "accuracy": None, "comprehensiveness": None,
             "helpfulness": None, "relevance": None}]
    j = ag.judge_scores(rows)
    assert j == {("1", "base"): {"accuracy": 3.0, "comprehensiveness": 3.0, "helpfulness": 4.0, "relevance": 5.0}}


def test_correlations_match_scipy_per_model_pooled_and_paired():
    rng = np.random.default_rng(7)
    ids = [str(i) for i in range(25)]
    mvals = {(i, m): float(rng.random()) for i in ids for m in ("base", "finetuned")}
    jvals = {(i, m): int(rng.integers(1, 6)) for i in ids for m in ("base", "finetuned")}
    metrics, judge = ag.metric_scores(_scores(mvals)), ag.judge_scores(_judged(jvals))
    c = ag.correlations(metrics, judge, ids, "base", "finetuned")
    x = [mvals[(i, "finetuned")] - mvals[(i, "base")] for i in ids]
    y = [jvals[(i, "finetuned")] - jvals[(i, "base")] for i in ids]
    assert c["paired_difference"]["rouge1"]["helpfulness"]["spearman"]["stat"] == pytest.approx(stats.spearmanr(x, y).statistic)
    xb, yb = [mvals[(i, "base")] for i in ids], [jvals[(i, "base")] for i in ids]
    assert c["per_model"]["base"]["meteor"]["relevance"]["kendall"]["stat"] == pytest.approx(stats.kendalltau(xb, yb).statistic)
    xp = [mvals[(i, m)] for m in ("base", "finetuned") for i in ids]
    yp = [jvals[(i, m)] for m in ("base", "finetuned") for i in ids]
    assert c["pooled"]["bleu"]["accuracy"]["spearman"]["p"] == pytest.approx(stats.spearmanr(xp, yp).pvalue)
    assert c["pooled"]["bleu"]["accuracy"]["spearman"]["n"] == 50


def test_top_disagreements_pick_strongest_opposite_preferences():
    # Metric differences (ft - base) and judge differences per item; scales: metric RMS, judge RMS.
    md = {"a": 0.4, "b": -0.2, "c": 0.1, "d": 0.3, "e": -0.1}
    jd = {"a": -2, "b": 1, "c": -1, "d": 2, "e": -1}
    mvals = {**{(i, "base"): 0.5 for i in md}, **{(i, "finetuned"): 0.5 + v for i, v in md.items()}}
    jvals = {**{(i, "base"): 3 for i in jd}, **{(i, "finetuned"): 3 + v for i, v in jd.items()}}
    metrics, judge = ag.metric_scores(_scores(mvals)), ag.judge_scores(_judged(jvals))
    ids = sorted(md)
    s = ag.disagreement_scores(metrics, judge, ids, "base", "finetuned")
    rms_m = math.sqrt(sum(v * v for v in md.values()) / 5)
    rms_j = math.sqrt(sum(v * v for v in jd.values()) / 5)
    assert s["a"]["track_a"] == pytest.approx(0.4 / rms_m)
    assert s["a"]["conflict"] == pytest.approx((0.4 / rms_m) * (2 / rms_j))
    assert s["d"]["conflict"] < 0 and s["e"]["conflict"] < 0  # same direction: no conflict
    assert ag.top_disagreements(s, k=3) == ["a", "b", "c"]
    assert ag.top_disagreements(s, k=10) == ["a", "b", "c"]  # only conflicting items are shown


def test_analyse_builds_examples_side_by_side():
    mvals = {("1", "base"): 0.1, ("1", "finetuned"): 0.6, ("2", "base"): 0.3, ("2", "finetuned"): 0.2,
             ("3", "base"): 0.2, ("3", "finetuned"): 0.4}
    jvals = {("1", "base"): 4, ("1", "finetuned"): 2, ("2", "base"): 3, ("2", "finetuned"): 3,
             ("3", "base"): 2, ("3", "finetuned"): 4}
    records = {(i, m): {"id": i, "model": m, "prompt": f"q{i}", "reference": f"r{i}", "response": f"{m}{i}",
                        "finish_reason": "stop"} for (i, m) in mvals}
    judgments = _judged(jvals) + [{"id": "4", "model": "base", "status": "parse_failure", **{d: None for d in ag.DIMENSIONS}}]
    out = ag.analyse(_scores(mvals) + _scores({("4", "base"): 0.1, ("4", "finetuned"): 0.2}), judgments, records)
    assert out["n_items"] == 3 and out["excluded_ids"] == ["4"]
    assert [e["id"] for e in out["examples"]] == ["1"] and out["n_conflicting_items"] == 1
    ex = out["examples"][0]
    assert ex["prompt"] == "q1" and ex["reference"] == "r1"
    assert ex["models"]["finetuned"]["response"] == "finetuned1" and ex["models"]["base"]["judge"]["accuracy"] == 4.0
    assert ex["models"]["finetuned"]["metrics"]["bleu"] == 0.6


def _ground_rows(right: dict) -> list[dict]:
    """grounding.jsonl rows: right[(id, model)] = diagnosis_correct; other fields follow it."""
    rows = []
    for (i, m), ok in right.items():
        rows.append({"id": i, "model": m, "reference_condition": "Flu", "diagnosis_correct": ok,
                     "diagnosis_mentioned": ok, "tests_recall": 0.5 * ok, "tests_precision": None,
                     "medications_recall": 1.0, "medications_precision": 1.0})
    rows.append({"id": "9", "model": "base", "reference_condition": None})  # ungrounded: left out
    return rows


def test_grounded_agreement_counts_which_track_prefers_the_right_diagnosis():
    # items 1, 2: only the fine-tuned model names the reference diagnosis; item 3: only the base; 4: both.
    right = {("1", "base"): 0, ("1", "finetuned"): 1, ("2", "base"): 0, ("2", "finetuned"): 1,
             ("3", "base"): 1, ("3", "finetuned"): 0, ("4", "base"): 1, ("4", "finetuned"): 1}
    # Track A prefers the fine-tuned answer everywhere (right on 1, 2; wrong on 3); Track B follows the
    # diagnosis (right on 1, 2, 3) except a tie on 2.
    a = {(i, m): {n: (0.6 if m == "finetuned" else 0.2) + 0.01 * int(i) for n in ag.METRICS}
         for (i, m) in right}
    b = {(i, m): {d: 4.0 if right[(i, m)] else 2.0 for d in ag.DIMENSIONS} for (i, m) in right}
    for d in ag.DIMENSIONS:
        b[("2", "base")][d] = b[("2", "finetuned")][d] = 3.0
    result = ag.grounded_agreement({"Track A": (a, ag.METRICS), "Track B": (b, ag.DIMENSIONS)}, _ground_rows(right))
    ta, tb = result["tracks"]["Track A"], result["tracks"]["Track B"]
    assert ta["n_items"] == tb["n_items"] == 4 and ta["n_separating"] == 3
    assert ta["right_diagnosis"]["bleu"] == {"agree": 2, "disagree": 1, "tie": 0, "rate": 2 / 3}
    assert tb["right_diagnosis"]["accuracy"] == {"agree": 2, "disagree": 0, "tie": 1, "rate": 1.0}
    assert "Track B agrees with the grounded scores more" in result["summary"] and "67%" in result["summary"]
    ids = ["1", "2", "3", "4"]
    dx = [b[(i, "finetuned")]["accuracy"] - b[(i, "base")]["accuracy"] for i in ids]
    dg = [right[(i, "finetuned")] - right[(i, "base")] for i in ids]
    got = tb["correlations"]["accuracy"]["diagnosis_correct"]["paired_difference"]["stat"]
    assert got == pytest.approx(stats.spearmanr(dx, dg).statistic)
    # tests_precision is undefined for every row: no pair enters, the correlation is undefined
    assert tb["correlations"]["accuracy"]["tests_precision"]["pooled"] == {"stat": None, "p": None, "n": 0}


def test_grounded_agreement_without_separating_items_says_so():
    right = {("1", "base"): 1, ("1", "finetuned"): 1, ("2", "base"): 0, ("2", "finetuned"): 0}
    a = {k: {n: 0.5 for n in ag.METRICS} for k in right}
    result = ag.grounded_agreement({"Track A": (a, ag.METRICS)}, _ground_rows(right))
    assert result["tracks"]["Track A"]["n_separating"] == 0
    assert result["summary"].startswith("On no grounded item does exactly one model name the reference diagnosis")


@pytest.mark.parametrize("rates, rhos, tail", [
    ((1.0, 1.0), (0.75, 0.19), "the tracks prefer the right-diagnosis model equally often (100%), but Track A follows "
                               "the grounded differences more closely (Spearman +0.75 against +0.19)"),
    ((1.0, 1.0), (0.50, 0.50), "the tracks agree with it equally"),
    ((0.6, 0.9), (0.10, 0.40), "Track B agrees with the grounded scores more"),
    ((0.6, 0.9), (0.40, 0.10), "Track B prefers the right-diagnosis model more often, while Track A follows the "
                               "grounded differences more closely (Spearman +0.40 against +0.10)"),
])
def test_the_verdict_follows_both_numbers(rates, rhos, tail):
    """A tie in the decisive-comparison rate beside different Spearman rhos is not called equal agreement."""
    per = {label: {"n_separating": 27, "mean_right_diagnosis_rate": rate, "mean_paired_rho_diagnosis": rho}
           for label, rate, rho in zip(("Track A", "Track B"), rates, rhos)}
    verdict = ag._verdict(per)
    assert f"each a mean over the track's scores: {tail}. (The rate counts" in verdict
    assert f"paired-difference Spearman with diagnosis_correct {rhos[0]:+.2f})" in verdict
