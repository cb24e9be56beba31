"""Krippendorff's alpha: agreement of any number of raters, with missing ratings, and a bootstrap CI.

Data is a ``[raters, units]`` array with ``nan`` where a rater did not rate a unit (Krippendorff 2011,
"Computing Krippendorff's Alpha-Reliability", section C). Only units with at least two values are
*pairable*; the others are ignored. With ``o`` the coincidence matrix, ``n_c`` its margins and ``n`` the
number of pairable values::

    o_ck  = sum_u (number of c-k pairs in unit u) / (m_u - 1)           # m_u values in unit u
    alpha = 1 - D_o / D_e = 1 - (n - 1) * sum_ck o_ck delta2_ck / sum_ck n_c n_k delta2_ck

with the difference function ``delta2`` of the level of measurement (Krippendorff 2011, section E):

* nominal:  delta2_ck = 0 if c == k else 1
* ordinal:  delta2_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2) ** 2     (ranks from the margins)
* interval: delta2_ck = (c - k) ** 2

``alpha_bootstrap_ci`` resamples the pairable units with replacement (the unit is the sampled entity:
the nonparametric bootstrap of Zapf et al. 2016, BMC Med Res Methodol 16:93), recomputes alpha from
the resampled coincidences (margins included, so the ordinal metric follows the resample) and returns
the percentile interval. Krippendorff's own bootstrap (Hayes & Krippendorff 2007) resamples pairs of
values instead; docs/track-c.md says why the unit bootstrap is used here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVELS = ("nominal", "ordinal", "interval")


@dataclass(frozen=True)
class AlphaCI:
    """Alpha, its bootstrap percentile interval and what it rests on."""

    alpha: float
    low: float
    high: float
    n_units: int       # pairable units
    n_values: int      # pairable values (n)
    n_resamples: int   # resamples with a defined alpha (a resample whose values are all equal has none)


def _unit_coincidences(data, values=None) -> tuple[np.ndarray, np.ndarray]:
    """Per pairable unit, its contribution to the coincidence matrix: ``[U, V, V]``, and the value domain."""
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"reliability data must be [raters, units], got shape {x.shape}")
    observed = np.unique(x[~np.isnan(x)])
    domain = observed if values is None else np.unique(np.asarray(values, dtype=np.float64))
    if not np.isin(observed, domain).all():
        raise ValueError("a rating lies outside the given values")
    counts = np.zeros((x.shape[1], len(domain)))  # [U, V] values per unit
    r, u = np.nonzero(~np.isnan(x))
    np.add.at(counts, (u, np.searchsorted(domain, x[r, u])), 1.0)
    m = counts.sum(axis=1)
    counts = counts[m >= 2]  # [U', V] pairable units only
    m = m[m >= 2]
    pairs = counts[:, :, None] * counts[:, None, :]  # [U', V, V] ordered pairs of values in a unit
    pairs -= np.einsum("uv,vw->uvw", counts, np.eye(len(domain)))  # a value is not paired with itself
    return pairs / (m - 1)[:, None, None], domain


def _delta2(level: str, domain: np.ndarray, margins: np.ndarray) -> np.ndarray:
    """Squared differences ``[..., V, V]``; ordinal ones depend on the margins ``[..., V]``."""
    if level == "nominal":
        return np.broadcast_to(1.0 - np.eye(len(domain)), margins.shape + (len(domain),))
    if level == "interval":
        return np.broadcast_to((domain[:, None] - domain[None, :]) ** 2, margins.shape + (len(domain),))
    if level == "ordinal":
        cum = np.cumsum(margins, axis=-1)  # [..., V]
        lo, hi = np.minimum.outer(np.arange(len(domain)), np.arange(len(domain))), \
            np.maximum.outer(np.arange(len(domain)), np.arange(len(domain)))
        between = cum[..., hi] - cum[..., lo] + margins[..., lo]  # sum_{g=c..k} n_g, [..., V, V]
        return (between - (margins[..., :, None] + margins[..., None, :]) / 2) ** 2
    raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


def _alpha_from(o: np.ndarray, level: str, domain: np.ndarray) -> np.ndarray:
    """Alpha from coincidence matrices ``[..., V, V]``; nan where D_e = 0 (a single value) or n < 2."""
    n_c = o.sum(axis=-1)  # [..., V]
    n = n_c.sum(axis=-1)
    d2 = _delta2(level, domain, n_c)
    observed = (o * d2).sum(axis=(-2, -1))
    expected = (n_c[..., :, None] * n_c[..., None, :] * d2).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1.0 - (n - 1) * observed / expected
    return np.where((expected > 0) & (n >= 2), alpha, np.nan)


def krippendorff_alpha(data, level: str = "ordinal", values=None) -> float:
    """Krippendorff's alpha of ``data`` ``[raters, units]`` (nan = missing); nan when undefined.

    Args:
        data: ratings, one row per rater, one column per unit.
        level: "nominal", "ordinal" or "interval".
        values: the scale's values (e.g. 1..5); by default the values that occur. Only the interval
            metric's values matter; alpha does not change with unused values.
    """
    pairs, domain = _unit_coincidences(data, values)
    if len(pairs) == 0:
        return float("nan")
    return float(_alpha_from(pairs.sum(axis=0), level, domain))


def alpha_bootstrap_ci(data, level: str = "ordinal", n_resamples: int = 2000, confidence: float = 0.95,
                       seed: int = 0, values=None) -> AlphaCI:
    """Alpha with a percentile bootstrap interval over the pairable units (seeded, reproducible).

    The resampled unit indices are ``numpy.random.default_rng(seed).integers(0, U, size=(n_resamples, U))``
    with U the number of pairable units in column order, so the draw can be replayed.
    """
    if n_resamples < 1 or not 0 < confidence < 1:
        raise ValueError("n_resamples must be >= 1 and confidence in (0, 1)")
    pairs, domain = _unit_coincidences(data, values)
    n_units = len(pairs)
    n_values = int(round(pairs.sum())) if n_units else 0
    if n_units == 0:
        return AlphaCI(float("nan"), float("nan"), float("nan"), 0, 0, 0)
    point = float(_alpha_from(pairs.sum(axis=0), level, domain))
    idx = np.random.default_rng(seed).integers(0, n_units, size=(n_resamples, n_units))  # [B, U]
    weights = np.zeros((n_resamples, n_units))
    np.add.at(weights, (np.arange(n_resamples)[:, None], idx), 1.0)  # [B, U] times each unit was drawn
    o = (weights @ pairs.reshape(n_units, -1)).reshape(n_resamples, len(domain), len(domain))  # [B, V, V]
    alphas = _alpha_from(o, level, domain)
    alphas = alphas[~np.isnan(alphas)]
    if len(alphas) == 0:
        return AlphaCI(point, float("nan"), float("nan"), n_units, n_values, 0)
    tail = (1 - confidence) / 2
    low, high = np.quantile(alphas, [tail, 1 - tail])
    return AlphaCI(point, float(low), float(high), n_units, n_values, len(alphas))
