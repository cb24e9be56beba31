"""Intraclass correlation ICC(2,1) and ICC(2,k): two-way random effects, absolute agreement.

Shrout & Fleiss (1979), case 2: each of ``n`` targets is rated by the same ``k`` raters, who are a
random sample of raters. From the two-way ANOVA of the ``[n, k]`` table (targets x raters), with BMS
the between-targets, JMS the between-raters and EMS the residual mean square::

    ICC(2,1) = (BMS - EMS) / (BMS + (k - 1) EMS + k (JMS - EMS) / n)     # one rater's reliability
    ICC(2,k) = (BMS - EMS) / (BMS + (JMS - EMS) / n)                     # reliability of the k-rater mean

McGraw & Wong (1996) call them ICC(A,1) and ICC(A,k). Their 95% interval (McGraw & Wong 1996,
Table 7, case 2A; a Satterthwaite approximation) is computed for ICC(2,1) and carried to ICC(2,k) by the
Spearman-Brown formula ``k L / (1 + (k - 1) L)``. The table must be complete: a target that not every
rater rated has to be dropped (or use Krippendorff's alpha, which allows missing ratings).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import f as f_dist


@dataclass(frozen=True)
class ICCResult:
    """ICC(2,1) and ICC(2,k) with 95% intervals, and the table's size and mean squares."""

    icc2_1: float
    icc2_k: float
    ci2_1: tuple[float, float]
    ci2_k: tuple[float, float]
    n: int     # targets
    k: int     # raters
    bms: float
    jms: float
    ems: float


def _mean_squares(x: np.ndarray) -> tuple[float, float, float]:
    """Between-targets, between-raters and residual mean squares of a two-way table ``[n, k]``."""
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    return ss_rows / (n - 1), ss_cols / (k - 1), ss_err / ((n - 1) * (k - 1))


def icc2(ratings, confidence: float = 0.95) -> ICCResult:
    """ICC(2,1) and ICC(2,k) of a complete ``[targets, raters]`` table (at least 2 x 2).

    Values are nan where a denominator is 0 (e.g. every rating equal).
    """
    x = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"ICC needs a [targets, raters] table of at least 2 x 2, got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError("ICC needs a complete table (no missing ratings)")
    n, k = x.shape
    bms, jms, ems = _mean_squares(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        single = (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n)  # Shrout & Fleiss 1979, ICC(2,1)
        average = (bms - ems) / (bms + (jms - ems) / n)                     # Shrout & Fleiss 1979, ICC(2,k)
    low, high = _interval(float(single), n, k, bms, jms, ems, confidence)
    spearman_brown = lambda r: k * r / (1 + (k - 1) * r)  # noqa: E731
    return ICCResult(float(single), float(average), (low, high), (spearman_brown(low), spearman_brown(high)),
                     n, k, float(bms), float(jms), float(ems))


def _interval(rho: float, n: int, k: int, bms: float, jms: float, ems: float,
              confidence: float) -> tuple[float, float]:
    """McGraw & Wong (1996) case 2A interval of ICC(A,1) (Satterthwaite degrees of freedom v)."""
    if not np.isfinite(rho) or rho >= 1 or ems <= 0:
        return float("nan"), float("nan")
    a = k * rho / (n * (1 - rho))
    b = 1 + k * rho * (n - 1) / (n * (1 - rho))
    v = (a * jms + b * ems) ** 2 / ((a * jms) ** 2 / (k - 1) + (b * ems) ** 2 / ((n - 1) * (k - 1)))
    q = 1 - (1 - confidence) / 2
    f_low, f_high = f_dist.ppf(q, n - 1, v), f_dist.ppf(q, v, n - 1)
    c = k * jms + (k * n - k - n) * ems
    low = n * (bms - f_low * ems) / (f_low * c + n * bms)
    high = n * (f_high * bms - ems) / (c + n * f_high * bms)
    return float(low), float(high)
