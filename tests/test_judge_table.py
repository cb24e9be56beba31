"""Table 2 numbers: means, p-values (hand-computed and scipy), failures counted, consistency, position bias."""
import random

import pytest
from scipy import stats

from judge.table import position_bias, render_markdown, table2

DIMS = ("accuracy", "comprehensiveness", "helpfulness", "relevance")


def row(model, item, score, repeat=0, status="ok"):
    scores = {d: (score if status == "ok" else None) for d in DIMS}
    return {"id": str(item), "model": model, "repeat": repeat, "status": status, **scores}


def test_means_and_hand_computed_wilcoxon():
    rows = [row("base", i, s) for i, s in enumerate([2, 3, 4, 5])] + [row("ft", i, 1) for i in range(4)]
    rows.append(row("ft", 9, None, status="parse_failure"))
    rows.append(row("ft", 8, None, status="error"))
    random.Random(0).shuffle(rows)  # pairing must follow ids, not row order
    t = table2(rows, ["base", "ft"], judge_model="judge-x")
    assert t["mean"]["base"]["accuracy"] == 3.5 and t["mean"]["ft"]["accuracy"] == 1.0
    assert t["n"] == {"base": 4, "ft": 4}
    assert t["parse_failures"] == {"base": 0, "ft": 1} and t["errors"] == {"base": 0, "ft": 1}
    # Differences 1, 2, 3, 4, all positive: exact two-sided p = 2 / 2**4.
    assert t["p_values"]["ft"]["accuracy"]["wilcoxon"] == pytest.approx(0.125)
    assert t["p_values"]["ft"]["n_pairs"] == 4
    expected_mw = stats.mannwhitneyu([2, 3, 4, 5], [1, 1, 1, 1], alternative="two-sided").pvalue
    assert t["p_values"]["ft"]["relevance"]["mann_whitney"] == pytest.approx(expected_mw)
    md = render_markdown(t)
    assert "| Accuracy | 3.50 | 1.00 |" in md and "| Parse failures | 0 | 1 |" in md and "N = 4" in md


def test_p_values_match_scipy_on_random_paired_data():
    rng = random.Random(3)
    a = {str(i): rng.randint(1, 5) for i in range(30)}
    b = {str(i): rng.randint(1, 5) for i in range(30)}
    rows = [row("a", i, s) for i, s in a.items()] + [row("b", i, s) for i, s in b.items()]
    p = table2(rows, ["a", "b"])["p_values"]["b"]["helpfulness"]
    ids = sorted(a)
    assert p["wilcoxon"] == pytest.approx(stats.wilcoxon([a[i] for i in ids], [b[i] for i in ids]).pvalue)
    assert p["mann_whitney"] == pytest.approx(stats.mannwhitneyu(list(a.values()), list(b.values())).pvalue)


def test_all_tied_pairs_give_p_one_and_small_n_gives_none():
    rows = [row(m, i, 3) for m in ("a", "b") for i in range(5)]
    assert table2(rows, ["a", "b"])["p_values"]["b"]["accuracy"]["wilcoxon"] == 1.0
    one = table2([row("a", 0, 3), row("b", 0, 4)], ["a", "b"])["p_values"]["b"]["accuracy"]
    assert one == {"mann_whitney": None, "wilcoxon": None}


def test_repeats_average_and_self_consistency():
    rows = [row("a", 1, 3, 0), row("a", 1, 3, 1), row("a", 2, 2, 0), row("a", 2, 4, 1),
            row("b", 1, 1, 0), row("b", 1, 1, 1), row("b", 2, 1, 0), row("b", 2, 5, 1, status="parse_failure")]
    t = table2(rows, ["a", "b"], repeats=2)
    assert t["mean"]["a"]["accuracy"] == 3.0 and t["mean"]["b"]["accuracy"] == 1.0
    sc = t["self_consistency"]
    assert sc["a"]["items"] == 2 and sc["a"]["relevance"] == {"exact_agreement": 0.5, "mean_abs_diff": 1.0}
    assert sc["b"]["items"] == 1 and sc["b"]["accuracy"]["exact_agreement"] == 1.0
    assert "self-consistency over 2 repeats" in render_markdown(t)


def pair(item, first, second, winner):
    model = {"A": first, "B": second}.get(winner, "tie")
    return {"id": str(item), "repeat": 0, "models": [first, second], "status": "ok", "winner": winner,
            "winner_model": model}


def test_position_bias_hand_example():
    rows = [pair(1, "a", "b", "A"), pair(1, "b", "a", "A"),  # first shown wins twice: inconsistent
            pair(2, "a", "b", "B"), pair(2, "b", "a", "A"),  # b both times
            pair(3, "a", "b", "tie"), pair(3, "b", "a", "tie"),
            pair(4, "a", "b", "B"), pair(4, "b", "a", "B"),  # second shown wins twice
            pair(5, "a", "b", "A"), {**pair(5, "b", "a", "A"), "status": "parse_failure"}]
    p = position_bias(rows, "a", "b")
    assert p == {"a": "a", "b": "b", "n": 4, "wins_a": 0, "wins_b": 1, "ties": 1, "inconsistent": 2,
                 "position_bias_rate": 0.5, "prefers_first": 1, "prefers_second": 1, "failures": 1}


def test_tiny_p_values_print_as_in_evalkit():
    rows = [row(m, i, 3) for m in ("a", "b") for i in range(5)]
    t = table2(rows, ["a", "b"])
    t["p_values"]["b"]["accuracy"] = {"mann_whitney": 3e-7, "wilcoxon": 0.0}
    md = render_markdown(t)
    assert "| Accuracy | 3.00 | 3.00 | <0.0001 | <0.0001 |" in md and "0.0000" not in md
    assert "| Relevance | 3.00 | 3.00 | 1.0000 | 1.0000 |" in md
