"""Agreement between Track A (lexical metrics) and Track B (LLM judge), item by item.

The paper (section 5.3) only *describes* the disagreement between its two tracks. This module
measures it on the per-item files the two tracks write (`track_a/scores.jsonl`,
`track_b/judgments.jsonl`):

* rank correlation (Spearman's rho and Kendall's tau-b) of each metric with each judge dimension,
  per model, pooled over both models, and on the paired differences (fine-tuned minus base, per
  item) -- the last one asks "when a metric says the fine-tuned answer got better, does the judge?";
* how often the two tracks prefer the same model on an item, with ties counted separately;
* the items on which they disagree most (see `disagreement_scores`).

Every function here is pure (lists and dicts in, dicts out); `analyse` is the one entry point.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

METRICS = ("bleu", "rouge1", "rouge2", "rougeL", "meteor")
DIMENSIONS = ("accuracy", "comprehensiveness", "helpfulness", "relevance")


@dataclass(frozen=True)
class Correlation:
    """A rank correlation: the statistic (None when undefined, e.g. a constant input), p-value, N."""

    stat: float | None
    p: float | None
    n: int


def rankdata(x) -> np.ndarray:
    """Ranks 1..n with ties given the mean of the ranks they span (scipy's `method="average"`)."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0  # mean of positions i..j, 1-based
        i = j + 1
    return ranks


def spearman(x, y) -> Correlation:
    """Spearman's rho: Pearson's r of the average ranks; p from Student's t with n - 2 df (as scipy)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return Correlation(None, None, n)
    rx, ry = rankdata(x) - (n + 1) / 2.0, rankdata(y) - (n + 1) / 2.0
    rho = float(np.dot(rx, ry) / math.sqrt(np.dot(rx, rx) * np.dot(ry, ry)))
    rho = max(-1.0, min(1.0, rho))
    if abs(rho) == 1.0:
        return Correlation(rho, 0.0, n)
    t = rho * math.sqrt((n - 2) / ((1.0 - rho) * (1.0 + rho)))
    return Correlation(rho, float(2.0 * stats.t.sf(abs(t), n - 2)), n)


def kendall_tau_b(x, y) -> Correlation:
    """Kendall's tau-b (ties in either vector corrected) with the large-sample normal p-value.

    tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2)), n0 = n(n-1)/2, n1/n2 = pairs tied in x/y. The
    variance of C - D under independence with ties is Kendall's (1970) formula, which scipy uses
    for `kendalltau(..., method="asymptotic")`.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return Correlation(None, None, n)
    sx = np.sign(x[:, None] - x[None, :])  # [n, n] pairwise order in x
    sy = np.sign(y[:, None] - y[None, :])  # [n, n] pairwise order in y
    s = float(np.triu(sx * sy, k=1).sum())  # concordant minus discordant pairs
    n0 = n * (n - 1) / 2.0
    tx, ty = _tie_groups(x), _tie_groups(y)
    n1 = float(sum(t * (t - 1) / 2.0 for t in tx))
    n2 = float(sum(t * (t - 1) / 2.0 for t in ty))
    tau = max(-1.0, min(1.0, s / math.sqrt((n0 - n1) * (n0 - n2))))
    var = ((n * (n - 1) * (2 * n + 5)
            - sum(t * (t - 1) * (2 * t + 5) for t in tx)
            - sum(t * (t - 1) * (2 * t + 5) for t in ty)) / 18.0
           + sum(t * (t - 1) * (t - 2) for t in tx) * sum(t * (t - 1) * (t - 2) for t in ty)
           / (9.0 * n * (n - 1) * (n - 2))
           + sum(t * (t - 1) for t in tx) * sum(t * (t - 1) for t in ty) / (2.0 * n * (n - 1)))
    z = s / math.sqrt(var)
    return Correlation(tau, float(2.0 * stats.norm.sf(abs(z))), n)


def _tie_groups(x: np.ndarray) -> list[int]:
    """Sizes of the groups of equal values that have more than one member."""
    _, counts = np.unique(x, return_counts=True)
    return [int(c) for c in counts if c > 1]


def metric_scores(rows: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    """`scores.jsonl` rows -> {(id, model): {metric: value}}."""
    return {(str(r["id"]), str(r["model"])): {m: float(r[m]) for m in METRICS} for r in rows}


def judge_scores(rows: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    """`judgments.jsonl` rows -> {(id, model): {dimension: mean over the ok repeats}}.

    Rows whose status is not "ok" (parse failures, errors) carry no score and are left out: a
    missing judgment is never imputed.
    """
    acc: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r.get("status") == "ok" and all(r.get(d) is not None for d in DIMENSIONS):
            acc.setdefault((str(r["id"]), str(r["model"])), []).append(r)
    return {key: {d: float(np.mean([float(r[d]) for r in rs])) for d in DIMENSIONS}
            for key, rs in acc.items()}


def paired_items(metrics: dict, judge: dict, base: str, finetuned: str) -> list[str]:
    """Ids that have metric scores and judge scores for both models, sorted (numerically if possible)."""
    ids = {i for (i, _m) in metrics} & {i for (i, _m) in judge}
    keep = [i for i in ids if all((i, m) in metrics and (i, m) in judge for m in (base, finetuned))]
    return sorted(keep, key=_id_key)


def correlations(metrics: dict, judge: dict, ids: list[str], base: str, finetuned: str) -> dict:
    """Spearman and Kendall of every metric with every judge dimension.

    Returns {"per_model": {model: table}, "pooled": table, "paired_difference": table}, each table
    {metric: {dimension: {"spearman": Correlation, "kendall": Correlation}}} as plain dicts.
    """
    def table(xs_of, ys_of) -> dict:
        out = {}
        for m in METRICS:
            out[m] = {}
            for d in DIMENSIONS:
                x, y = xs_of(m), ys_of(d)
                out[m][d] = {"spearman": asdict(spearman(x, y)), "kendall": asdict(kendall_tau_b(x, y))}
        return out

    result = {"per_model": {}}
    for model in (base, finetuned):
        result["per_model"][model] = table(lambda m: [metrics[(i, model)][m] for i in ids],
                                           lambda d: [judge[(i, model)][d] for i in ids])
    both = (base, finetuned)
    result["pooled"] = table(lambda m: [metrics[(i, k)][m] for k in both for i in ids],
                             lambda d: [judge[(i, k)][d] for k in both for i in ids])
    result["paired_difference"] = table(
        lambda m: [metrics[(i, finetuned)][m] - metrics[(i, base)][m] for i in ids],
        lambda d: [judge[(i, finetuned)][d] - judge[(i, base)][d] for i in ids])
    return result


def preference_agreement(metrics: dict, judge: dict, ids: list[str], base: str, finetuned: str) -> dict:
    """Per metric x dimension: on how many items both tracks prefer the same model.

    An item's preference is the sign of (fine-tuned - base). Items where either track ties are not
    forced into agree/disagree: they are counted as `metric_tie`, `judge_tie` or `both_tie`.
    `agreement_rate` = agree / (agree + disagree), over the items where both tracks pick a model.
    """
    out = {}
    for m in METRICS:
        out[m] = {}
        for d in DIMENSIONS:
            c = {"n": len(ids), "agree": 0, "disagree": 0, "metric_tie": 0, "judge_tie": 0, "both_tie": 0}
            for i in ids:
                a = _sign(metrics[(i, finetuned)][m] - metrics[(i, base)][m])
                b = _sign(judge[(i, finetuned)][d] - judge[(i, base)][d])
                if a == 0 and b == 0:
                    c["both_tie"] += 1
                elif a == 0:
                    c["metric_tie"] += 1
                elif b == 0:
                    c["judge_tie"] += 1
                else:
                    c["agree" if a == b else "disagree"] += 1
            decisive = c["agree"] + c["disagree"]
            c["agreement_rate"] = c["agree"] / decisive if decisive else None
            out[m][d] = c
    return out


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


def disagreement_scores(metrics: dict, judge: dict, ids: list[str], base: str, finetuned: str) -> dict:
    """Per item: each track's standardised preference for the fine-tuned model, and their conflict.

    Track A's preference is the mean over the five metrics of (fine-tuned - base) / s_metric, where
    s_metric is the root-mean-square of that metric's differences over the items (a scale, not a
    centring: the sign of every difference is kept). Track B's is the same over the four
    dimensions. `conflict` = -(A * B): positive exactly when the tracks prefer different models,
    and largest when both preferences are strong.
    """
    def standardised(values: dict[str, dict[str, float]], names) -> dict[str, float]:
        diffs = {n: np.array([values[(i, finetuned)][n] - values[(i, base)][n] for i in ids]) for n in names}
        scale = {n: float(np.sqrt(np.mean(v ** 2))) if len(v) else 0.0 for n, v in diffs.items()}
        pref = {}
        for k, i in enumerate(ids):
            parts = [diffs[n][k] / scale[n] for n in names if scale[n] > 0]
            pref[i] = float(np.mean(parts)) if parts else 0.0
        return pref

    a, b = standardised(metrics, METRICS), standardised(judge, DIMENSIONS)
    return {i: {"track_a": a[i], "track_b": b[i], "conflict": -(a[i] * b[i])} for i in ids}


def top_disagreements(scores: dict, k: int = 3) -> list[str]:
    """The k ids with the largest positive conflict (ties broken by id); fewer if fewer conflict."""
    conflicting = [i for i, s in scores.items() if s["conflict"] > 0]
    return sorted(conflicting, key=lambda i: (-scores[i]["conflict"], i))[:k]


def analyse(score_rows: list[dict], judgment_rows: list[dict], records: dict[tuple[str, str], dict],
            base: str = "base", finetuned: str = "finetuned", k: int = 3) -> dict:
    """The whole agreement analysis as one JSON-ready dict.

    Args:
        score_rows: rows of Track A's `scores.jsonl` (already without Track A's exclusions).
        judgment_rows: rows of Track B's `judgments.jsonl`.
        records: {(id, model): generation record} for the side-by-side examples.
        base, finetuned: the two model names as they appear in the files.
        k: how many examples of disagreement to show.
    """
    metrics, judge = metric_scores(score_rows), judge_scores(judgment_rows)
    ids = paired_items(metrics, judge, base, finetuned)
    judged_ids = {i for (i, _m) in judge}
    result = {
        "base": base, "finetuned": finetuned, "n_items": len(ids),
        "n_judged_items": len(judged_ids),
        "excluded_ids": sorted({i for (i, _m) in metrics} - set(ids), key=_id_key),
        "correlations": correlations(metrics, judge, ids, base, finetuned),
        "preference_agreement": preference_agreement(metrics, judge, ids, base, finetuned),
    }
    scores = disagreement_scores(metrics, judge, ids, base, finetuned)
    examples = []
    for i in top_disagreements(scores, k):
        ex = {"id": i, **scores[i], "prompt": records.get((i, base), {}).get("prompt", ""),
              "reference": records.get((i, base), {}).get("reference", ""), "models": {}}
        for model in (base, finetuned):
            rec = records.get((i, model), {})
            ex["models"][model] = {"response": rec.get("response", ""),
                                   "finish_reason": rec.get("finish_reason"),
                                   "metrics": metrics[(i, model)], "judge": judge[(i, model)]}
        examples.append(ex)
    result["examples"] = examples
    result["n_conflicting_items"] = sum(1 for s in scores.values() if s["conflict"] > 0)
    return result


def _id_key(s: str):
    return (0, int(s), s) if s.isdigit() else (1, 0, s)
