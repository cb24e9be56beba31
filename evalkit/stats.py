"""Significance tests and effect sizes for per-item metric scores of two systems on the same items.

* ``mann_whitney_u``: the test the paper's Table 1 reports (two-sided). It treats the two systems'
  scores as independent samples, which paired outputs are not; it is kept for comparability.
* ``wilcoxon_signed_rank``, ``paired_bootstrap_ci``, ``approximate_randomization``: tests that use the
  pairing (same prompt, two systems). ``rank_biserial``, ``matched_pairs_rank_biserial`` and
  ``cohens_dz`` are the effect sizes.
* ``wilson_interval`` and ``mcnemar_exact``: a proportion's confidence interval and the paired test
  of two systems' 0/1 outcomes on the same items (Table 3's diagnosis accuracy).

Conventions: ``x`` is the baseline, ``y`` the compared system, differences are ``d = y - x``, and a
positive effect size means ``y`` scores higher. p-values equal ``scipy.stats`` with its defaults; the
statistics and the normal approximations are written out here next to their formulas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from scipy.special import ndtr


@dataclass(frozen=True)
class Correlation:
    """A rank correlation: the statistic (None when undefined, e.g. a constant input), p-value, N."""

    stat: float | None
    p: float | None
    n: int


def spearman(x, y) -> Correlation:
    """Spearman's rho (Pearson's r of mid-ranks) with scipy's t-distribution p-value; None if a side is constant."""
    x, y = _pair(x, y)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return Correlation(None, None, len(x))
    r = sps.spearmanr(x, y)
    return Correlation(float(r.statistic), float(r.pvalue), len(x))


def kendall_tau_b(x, y) -> Correlation:
    """Kendall's tau-b (ties corrected) with the large-sample normal p-value (scipy, method="asymptotic")."""
    x, y = _pair(x, y)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return Correlation(None, None, len(x))
    r = sps.kendalltau(x, y, variant="b", method="asymptotic")
    return Correlation(float(r.statistic), float(r.pvalue), len(x))


@dataclass(frozen=True)
class TestResult:
    """A test's statistic, two-sided p-value and the method that produced the p-value."""

    statistic: float
    pvalue: float
    method: str


def numbers(values, name: str) -> np.ndarray:
    """`values` (a sequence or array of numbers, NaN allowed) as a float array; TypeError naming `name`
    for None, a string, a dict or set, or anything that is not numbers."""
    if values is None or isinstance(values, (str, bytes, dict, set)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence of numbers (list, tuple or array), got {type(values).__name__}")
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must hold numbers only") from None


def _scores(values, name: str) -> np.ndarray:
    """A 1-D float array of finite scores, or TypeError / ValueError naming the argument."""
    array = numbers(values, name)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds a NaN or infinite score (position {int(np.argmin(np.isfinite(array)))})")
    return array


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    return _scores(x, "x"), _scores(y, "y")


def _diff(x, y) -> np.ndarray:
    """Paired differences d = y - x (equal lengths required)."""
    x, y = _pair(x, y)
    if len(x) != len(y):
        raise ValueError(f"paired scores need equal lengths, got {len(x)} and {len(y)}")
    return y - x


def mann_whitney_u(x, y) -> TestResult:
    """Two-sided Mann-Whitney U test, equal to ``scipy.stats.mannwhitneyu(x, y)`` (its defaults).

    U1 = R1 - n1 (n1 + 1) / 2 with R1 the sum of x's mid-ranks in the pooled sample (statistic
    reported as scipy does, for ``x``). p-value: scipy's ``method="auto"``: the exact null
    distribution (from scipy) when a sample has at most 8 values and there are no ties, else the
    normal approximation with tie correction and continuity correction written out below:

        z = (max(U1, U2) - n1 n2 / 2 - 0.5) / sqrt(n1 n2 / 12 * ((n + 1) - sum(t^3 - t) / (n (n - 1))))
        p = 2 * (1 - Phi(z))
    """
    x, y = _pair(x, y)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("Mann-Whitney U needs at least one score per system")
    ranks = sps.rankdata(np.concatenate([x, y]))  # mid-ranks for ties
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    u2 = n1 * n2 - u1
    _, ties = np.unique(np.concatenate([x, y]), return_counts=True)
    if (n1 <= 8 or n2 <= 8) and not np.any(ties > 1):
        p = float(sps.mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue)
        return TestResult(u1, p, "exact (scipy)")
    n = n1 + n2
    tie_term = float(np.sum(ties.astype(np.float64) ** 3 - ties))
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    if sigma == 0.0:  # all values tied: no evidence of a difference
        return TestResult(u1, 1.0, "normal approximation (all values tied)")
    z = (max(u1, u2) - n1 * n2 / 2 - 0.5) / sigma
    p = min(1.0, 2 * float(ndtr(-z)))
    return TestResult(u1, p, "normal approximation, tie and continuity corrected")


def rank_biserial(x, y) -> float:
    """Rank-biserial correlation for Mann-Whitney: r = 2 U_y / (n1 n2) - 1 (Kerby 2014), in [-1, 1]."""
    x, y = _pair(x, y)
    u_x = mann_whitney_u(x, y).statistic
    u_y = len(x) * len(y) - u_x
    return 2 * u_y / (len(x) * len(y)) - 1


def _signed_ranks(x, y) -> tuple[np.ndarray, np.ndarray]:
    """Differences d = y - x without zeros (Wilcoxon's zero_method) and mid-ranks of |d|."""
    d = _diff(x, y)
    d = d[d != 0]
    return d, sps.rankdata(np.abs(d))


def wilcoxon_signed_rank(x, y) -> TestResult:
    """Two-sided Wilcoxon signed-rank test on d = y - x, equal to ``scipy.stats.wilcoxon(x, y)``.

    Zero differences are dropped before ranking (Wilcoxon's original rule, scipy's default
    ``zero_method="wilcox"``); ties among |d| get mid-ranks. The statistic is
    T = min(T+, T-), the smaller signed-rank sum. The p-value comes from scipy with its defaults
    (``correction=False``, ``method="auto"``: exact for n <= 50 without ties or zeros, else a
    permutation test for n <= 13 or the tie-corrected normal approximation). With no non-zero
    difference the p-value is 1 (no evidence of a difference).
    """
    d, ranks = _signed_ranks(x, y)
    t_plus = float(ranks[d > 0].sum())
    t_minus = float(ranks[d < 0].sum())
    if len(d) == 0:
        return TestResult(0.0, 1.0, "no non-zero difference")
    p = float(sps.wilcoxon(_diff(x, y)).pvalue)
    return TestResult(min(t_plus, t_minus), p, "scipy.stats.wilcoxon (zero_method='wilcox', method='auto')")


def matched_pairs_rank_biserial(x, y) -> float:
    """r = (T+ - T-) / (T+ + T-) over non-zero differences (Kerby 2014); 0 when all are zero."""
    d, ranks = _signed_ranks(x, y)
    total = float(ranks.sum())
    return 0.0 if total == 0 else float(ranks[d > 0].sum() - ranks[d < 0].sum()) / total


def cohens_dz(x, y) -> float:
    """Cohen's d_z = mean(d) / sd(d) with d = y - x and the n - 1 standard deviation (nan if sd = 0)."""
    d = _diff(x, y)
    if len(d) < 2:
        return float("nan")
    sd = float(np.std(d, ddof=1))
    return float(np.mean(d)) / sd if sd > 0 else float("nan")


def paired_bootstrap_ci(x, y, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0,
                        chunk: int = 1_000) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(y - x): resample item indices with replacement (seeded).

    Uses ``numpy.random.default_rng(seed)``; resamples are drawn in chunks of ``chunk`` to bound
    memory, which does not change the stream of random numbers.
    """
    d = _diff(x, y)
    n = len(d)
    if n == 0:
        raise ValueError("bootstrap needs at least one pair")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(size, n))  # [size, n] resampled item indices
        means[start:start + size] = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def approximate_randomization(x, y, n_permutations: int = 10_000, seed: int = 0,
                              chunk: int = 1_000) -> TestResult:
    """Paired approximate randomisation test of mean(y - x) = 0 (Noreen 1989), two-sided, seeded.

    Under H0 each pair's two scores are exchangeable, so each difference's sign is flipped at random
    (``numpy.random.default_rng(seed)``). p = (1 + #{|mean(s * d)| >= |mean(d)|}) / (1 + R), which
    counts the observed assignment and is never 0.
    """
    d = _diff(x, y)
    n = len(d)
    if n == 0:
        raise ValueError("randomisation needs at least one pair")
    observed = abs(float(d.mean()))
    rng = np.random.default_rng(seed)
    hits = 0
    tol = 1e-12 * max(1.0, observed)  # float round-off must not hide an equal statistic
    for start in range(0, n_permutations, chunk):
        size = min(chunk, n_permutations - start)
        signs = rng.integers(0, 2, size=(size, n)) * 2 - 1  # [size, n] random +-1
        stat = np.abs((signs * d).mean(axis=1))
        hits += int(np.count_nonzero(stat >= observed - tol))
    return TestResult(observed, (hits + 1) / (n_permutations + 1), f"sign flips, R={n_permutations}, seed={seed}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (Wilson 1927; Newcombe 1998, method 3).

    With p = successes / n and z the normal quantile 1 - (1 - confidence) / 2:

        centre = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

    The interval [centre - half, centre + half] stays inside [0, 1] and is not degenerate at 0 or n.
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    z = float(sps.norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def discordant_pairs(x, y) -> tuple[int, int]:
    """For paired 0/1 outcomes: b = #(x = 1, y = 0) and c = #(x = 0, y = 1)."""
    x, y = _pair(x, y)
    if len(x) != len(y) or not np.isin(np.concatenate([x, y]), (0.0, 1.0)).all():
        raise ValueError("McNemar's test needs paired 0/1 outcomes of equal length")
    return int(np.sum((x == 1) & (y == 0))), int(np.sum((x == 0) & (y == 1)))


def mcnemar_exact(x, y) -> TestResult:
    """McNemar's exact (conditional binomial) test of paired 0/1 outcomes, two-sided (McNemar 1947).

    Only the discordant pairs b (x right, y wrong) and c (x wrong, y right) carry information; under
    H0 each is equally likely, so given b + c, min(b, c) ~ Binomial(b + c, 1/2) and

        p = min(1, 2 * sum_{k=0}^{min(b, c)} C(b + c, k) / 2^(b + c))

    The statistic is min(b, c) (statsmodels' convention); p = 1 when there is no discordant pair.
    """
    b, c = discordant_pairs(x, y)
    n = b + c
    if n == 0:
        return TestResult(0.0, 1.0, "exact binomial, no discordant pair (b = c = 0)")
    p = min(1.0, 2 * float(sps.binom.cdf(min(b, c), n, 0.5)))
    return TestResult(float(min(b, c)), p, f"exact binomial on b = {b}, c = {c} discordant pairs")
