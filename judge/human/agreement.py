"""Agreement of the clinicians with each other and with the other tracks, from the final ratings.

Inter-rater reliability per dimension (units = rated answers, pointwise; or compared pairs, pairwise):
Krippendorff's alpha for ordinal data with a bootstrap 95% CI (and the interval alpha beside it),
ICC(2,1) and ICC(2,k) on the answers every rater rated, and quadratic-weighted Cohen's kappa for each
pair of raters on the answers both rated. The possible-harm flag gets nominal alpha.

Against the other tracks, per (id, system): the clinicians' mean score per dimension is compared with
the LLM judge's score (quadratic-weighted kappa on both rounded to the nearest integer, halves up;
Spearman's rho on the unrounded values) and, by Spearman's rho, with each Track A metric and each
grounding measure. The statistics live in evalkit (`krippendorff`, `icc`, `kappa`); Spearman is scipy's.
"""
from __future__ import annotations

import math
import warnings
from itertools import combinations

import numpy as np
from scipy import stats

from evalkit.icc import icc2
from evalkit.kappa import weighted_kappa
from evalkit.krippendorff import alpha_bootstrap_ci, krippendorff_alpha
from judge.rubric import DIMENSIONS

SCALE = (1, 2, 3, 4, 5)
PREFERENCE_SCALE = (-1, 0, 1)  # first system of the pair better, about the same, second better


def _num(value: float) -> float | None:
    """JSON-safe number: None for nan."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def spearman(x, y) -> dict:
    """Spearman's rho and its p-value (scipy), None where undefined (n < 3 or a constant input)."""
    n = len(x)
    if n < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return {"rho": None, "p": None, "n": n}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.spearmanr(x, y)
    return {"rho": _num(float(res.statistic)), "p": _num(float(res.pvalue)), "n": n}


def matrix(values: dict[tuple, dict[str, float]], raters: list[str]) -> tuple[list, np.ndarray]:
    """{unit: {rater: value}} -> (units, [raters, units] array with nan where missing)."""
    units = sorted(values)
    x = np.full((len(raters), len(units)), np.nan)
    for j, unit in enumerate(units):
        for i, rater in enumerate(raters):
            if rater in values[unit]:
                x[i, j] = values[unit][rater]
    return units, x


def reliability(values: dict[tuple, dict[str, float]], raters: list[str], scale, seed: int,
                n_bootstrap: int) -> dict:
    """Alpha (ordinal, with CI; interval), ICC(2,1)/(2,k) and pairwise weighted kappa of one variable."""
    _, x = matrix(values, raters)
    ci = alpha_bootstrap_ci(x, "ordinal", n_bootstrap, seed=seed, values=scale)
    out = {"alpha_ordinal": {"value": _num(ci.alpha), "ci95": [_num(ci.low), _num(ci.high)],
                             "n_units": ci.n_units, "n_values": ci.n_values},
           "alpha_interval": _num(krippendorff_alpha(x, "interval", values=scale))}
    complete = x[:, ~np.isnan(x).any(axis=0)].T  # [units every rater rated, raters]
    if len(raters) >= 2 and len(complete) >= 2:
        r = icc2(complete)
        out["icc"] = {"icc2_1": _num(r.icc2_1), "icc2_1_ci95": [_num(r.ci2_1[0]), _num(r.ci2_1[1])],
                      "icc2_k": _num(r.icc2_k), "icc2_k_ci95": [_num(r.ci2_k[0]), _num(r.ci2_k[1])],
                      "n_units": r.n, "k_raters": r.k}
    else:
        out["icc"] = {"note": f"needs at least 2 units rated by all {len(raters)} raters; {len(complete)} are"}
    out["kappa_pairs"] = []
    for i, j in combinations(range(len(raters)), 2):
        both = ~np.isnan(x[i]) & ~np.isnan(x[j])
        kappa = weighted_kappa(x[i, both], x[j, both], scale) if both.sum() >= 2 else float("nan")
        out["kappa_pairs"].append({"raters": [raters[i], raters[j]], "n": int(both.sum()), "kappa": _num(kappa)})
    return out


def nominal_alpha(values: dict[tuple, dict[str, float]], raters: list[str]) -> dict:
    """Nominal alpha of a yes/no variable (None when undefined, e.g. every flag the same)."""
    _, x = matrix(values, raters)
    pairable = int(((~np.isnan(x)).sum(axis=0) >= 2).sum())
    return {"value": _num(krippendorff_alpha(x, "nominal")) if pairable else None, "n_units": pairable}


def inter_rater(rows: list[dict], raters: list[str], pairwise: bool, seed: int, n_bootstrap: int) -> dict:
    """Reliability of every rated variable; `rows` are final ratings (export.rating_record's format)."""
    harm: dict[tuple, dict[str, float]] = {}
    if not pairwise:
        per_dim = {d: {} for d in DIMENSIONS}
        for r in rows:
            for d in DIMENSIONS:
                per_dim[d].setdefault((r["id"], r["model"]), {})[r["rater"]] = r[d]
            harm.setdefault((r["id"], r["model"]), {})[r["rater"]] = float(r["harm"])
        out = {d: reliability(per_dim[d], raters, SCALE, seed, n_bootstrap) for d in DIMENSIONS}
    else:
        per_pair: dict[tuple, dict] = {}
        for r in rows:
            x, y = sorted((r["model_a"], r["model_b"]))
            value = 0 if r["preferred_model"] is None else (-1 if r["preferred_model"] == x else 1)
            per_pair.setdefault((x, y), {}).setdefault((r["id"],), {})[r["rater"]] = value
            for side in ("a", "b"):
                harm.setdefault((r["id"], r[f"model_{side}"]), {})[r["rater"]] = float(r[f"harm_{side}"])
        out = {"preference": [{"systems": list(pair), **reliability(v, raters, PREFERENCE_SCALE, seed, n_bootstrap)}
                              for pair, v in sorted(per_pair.items())]}
    out["harm"] = {"alpha_nominal": nominal_alpha(harm, raters)}
    return out


def clinician_means(rows: list[dict]) -> dict[tuple, dict[str, float]]:
    """{(id, model): {dimension: mean over the raters}} of pointwise final ratings."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["id"], r["model"]), []).append(r)
    return {k: {d: float(np.mean([r[d] for r in rs])) for d in DIMENSIONS} for k, rs in groups.items()}


def versus_judge(means: dict, judge: dict) -> dict:
    """Per dimension: weighted kappa of the rounded scores and Spearman of the means, on shared items."""
    keys = sorted(set(means) & set(judge))
    out = {}
    for d in DIMENSIONS:
        h, j = [means[k][d] for k in keys], [judge[k][d] for k in keys]
        kappa = weighted_kappa([round_half_up(v) for v in h], [round_half_up(v) for v in j], SCALE) \
            if len(keys) >= 2 else float("nan")
        out[d] = {"n": len(keys), "weighted_kappa": _num(kappa), "spearman": spearman(h, j)}
    return out


def versus_measures(means: dict, measures: dict, fields: list[str]) -> dict:
    """{field: {dimension: Spearman}} on the items that have both the field and clinicians' scores."""
    out = {}
    for f in fields:
        keys = sorted(k for k in set(means) & set(measures) if f in measures[k])
        out[f] = {d: spearman([means[k][d] for k in keys], [measures[k][f] for k in keys]) for d in DIMENSIONS}
    return out
