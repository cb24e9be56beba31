"""Cohen's weighted kappa of two raters on an ordered scale (Cohen 1968).

With ``O`` the observed joint proportions of the two raters' categories, ``E`` the product of their
margins (chance agreement) and ``w`` the disagreement weights::

    kappa_w = 1 - sum_ij w_ij O_ij / sum_ij w_ij E_ij

quadratic weights ``w_ij = (c_i - c_j) ** 2``, linear ``|c_i - c_j|``, none ``[i != j]`` (Cohen's
kappa). Weights use the category *values*, so on a 1-5 scale the result equals scikit-learn's
``cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="quadratic")`` (scikit-learn weights by the
position in ``labels``, which differs when the values are not consecutive). Quadratic-weighted kappa
approaches ICC(3,1) for large samples (Fleiss & Cohen 1973).
"""
from __future__ import annotations

import numpy as np

WEIGHTS = ("quadratic", "linear", "none")


def weighted_kappa(a, b, categories=None, weights: str = "quadratic") -> float:
    """Weighted kappa of paired ratings ``a`` and ``b``; nan when undefined (no chance disagreement).

    Args:
        a, b: the two raters' ratings of the same units, equal lengths.
        categories: the scale's values (e.g. 1..5); by default the values that occur.
        weights: "quadratic", "linear" or "none".
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"kappa needs two 1-D ratings of equal length, got {a.shape} and {b.shape}")
    if len(a) == 0:
        return float("nan")
    cats = np.unique(np.concatenate([a, b])) if categories is None else np.unique(np.asarray(categories, float))
    if not (np.isin(a, cats).all() and np.isin(b, cats).all()):
        raise ValueError("a rating lies outside the given categories")
    ia, ib = np.searchsorted(cats, a), np.searchsorted(cats, b)
    observed = np.zeros((len(cats), len(cats)))
    np.add.at(observed, (ia, ib), 1.0)
    observed /= len(a)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))  # [V, V] chance agreement
    diff = cats[:, None] - cats[None, :]
    if weights == "quadratic":
        w = diff ** 2
    elif weights == "linear":
        w = np.abs(diff)
    elif weights == "none":
        w = (diff != 0).astype(np.float64)
    else:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    chance = float((w * expected).sum())
    return 1.0 - float((w * observed).sum()) / chance if chance > 0 else float("nan")
