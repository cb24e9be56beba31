"""Statistics: hand-computed vectors for each test and effect size, and parity with scipy."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from evalkit.stats import (approximate_randomization, cohens_dz, mann_whitney_u, matched_pairs_rank_biserial,
                           paired_bootstrap_ci, rank_biserial, wilcoxon_signed_rank)


def test_mann_whitney_exact_by_hand():
    # x all below y: U_x = 0; exact two-sided p = 2 / C(6, 3) = 0.1.
    res = mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert res.statistic == 0.0 and res.pvalue == pytest.approx(0.1, abs=1e-12)
    assert rank_biserial([1, 2, 3], [4, 5, 6]) == 1.0


def test_mann_whitney_ties_normal_approximation_by_hand():
    # pooled 1,2,2,2,3,4,5,6 -> ranks 1, 3, 3, 3, 5, 6, 7, 8; R_x = 1 + 3 + 3 + 5 = 12 -> U_x = 12 - 10 = 2.
    x, y = [1, 2, 2, 3], [2, 4, 5, 6]
    res = mann_whitney_u(x, y)
    assert res.statistic == 2.0
    var = 4 * 4 / 12 * (9 - (3**3 - 3) / (8 * 7))  # tie correction: one tie group of 3
    z = (14 - 8 - 0.5) / math.sqrt(var)            # max(U) - n1 n2 / 2 - continuity 0.5
    assert res.pvalue == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-12)
    assert rank_biserial(x, y) == pytest.approx(2 * 14 / 16 - 1)


def test_mann_whitney_all_tied():
    assert mann_whitney_u([0.5] * 10, [0.5] * 12).pvalue == 1.0


@pytest.mark.parametrize("n1,n2,decimals", [(5, 6, None), (5, 6, 1), (3, 20, None), (30, 40, 1), (84, 84, None),
                                            (84, 84, 2), (120, 90, 1)])
def test_mann_whitney_equals_scipy(n1, n2, decimals):
    rng = np.random.default_rng(n1 * 1000 + n2)
    x, y = rng.random(n1), rng.random(n2) * 1.2
    if decimals is not None:
        x, y = np.round(x, decimals), np.round(y, decimals)
    ours, ref = mann_whitney_u(x, y), sps.mannwhitneyu(x, y)
    assert ours.statistic == ref.statistic
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-10, abs=1e-300)


def test_wilcoxon_by_hand():
    # d = y - x = [1, 2, 0, -1, 5]; the zero is dropped; |d| = 1, 2, 1, 5 -> ranks 1.5, 3, 1.5, 4.
    x, y = [1, 2, 3, 4, 5], [2, 4, 3, 3, 10]
    res = wilcoxon_signed_rank(x, y)
    assert res.statistic == 1.5  # min(T+ = 8.5, T- = 1.5)
    # 16 equally likely sign patterns of ranks {1.5, 1.5, 3, 4}: T+ >= 8.5 for 3 of them; two-sided p = 2 * 3/16.
    assert res.pvalue == pytest.approx(0.375, abs=1e-12)
    assert matched_pairs_rank_biserial(x, y) == pytest.approx((8.5 - 1.5) / 10)
    assert cohens_dz(x, y) == pytest.approx(1.4 / math.sqrt(21.2 / 4), rel=1e-12)


def test_wilcoxon_no_difference():
    res = wilcoxon_signed_rank([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])
    assert res.pvalue == 1.0 and matched_pairs_rank_biserial([0.1, 0.2], [0.1, 0.2]) == 0.0
    assert math.isnan(cohens_dz([0.1, 0.2], [0.1, 0.2]))


@pytest.mark.parametrize("n,decimals", [(10, None), (10, 1), (40, None), (60, None), (84, 2), (200, 1)])
def test_wilcoxon_equals_scipy(n, decimals):
    rng = np.random.default_rng(n)
    x, y = rng.random(n), rng.random(n) + 0.05
    if decimals is not None:
        x, y = np.round(x, decimals), np.round(y, decimals)
    ours, ref = wilcoxon_signed_rank(x, y), sps.wilcoxon(x, y)
    assert ours.statistic == ref.statistic
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-10)


def test_paired_bootstrap_ci():
    x = np.zeros(30)
    assert paired_bootstrap_ci(x, x + 0.25, 200) == (0.25, 0.25)  # constant difference
    rng = np.random.default_rng(0)
    a, b = rng.random(200), rng.random(200) + 0.1
    ci = paired_bootstrap_ci(a, b, 20_000, seed=3)
    assert ci == paired_bootstrap_ci(a, b, 20_000, seed=3)  # seeded
    assert ci != paired_bootstrap_ci(a, b, 20_000, seed=4)
    ref = sps.bootstrap((b - a,), np.mean, n_resamples=20_000, method="percentile", random_state=0)
    assert ci[0] == pytest.approx(ref.confidence_interval.low, abs=0.005)
    assert ci[1] == pytest.approx(ref.confidence_interval.high, abs=0.005)
    assert ci[0] < float(np.mean(b - a)) < ci[1]


def test_approximate_randomization_matches_exact_enumeration():
    d = np.array([0.3, -0.1, 0.5, 0.2, 0.4, 0.05, -0.2])
    observed = abs(d.mean())
    flips = list(itertools.product([-1, 1], repeat=len(d)))
    exact = sum(abs(np.mean(np.array(s) * d)) >= observed - 1e-12 for s in flips) / len(flips)
    res = approximate_randomization(np.zeros(len(d)), d, 20_000, seed=1)
    assert res.pvalue == pytest.approx(exact, abs=0.01)
    assert res.pvalue == approximate_randomization(np.zeros(len(d)), d, 20_000, seed=1).pvalue
    assert approximate_randomization([1, 2], [1, 2], 100).pvalue == 1.0  # all differences zero
    strong = approximate_randomization(np.zeros(40), np.full(40, 0.3), 999, seed=0)
    assert strong.pvalue == pytest.approx(1 / 1000)  # no sign pattern but all-+ (and all--) reaches it


def test_paired_inputs_must_have_equal_length():
    with pytest.raises(ValueError, match="equal lengths"):
        wilcoxon_signed_rank([1, 2], [1, 2, 3])
