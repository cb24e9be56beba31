"""Agreement between Track A (lexical metrics) and Track B (LLM judge), item by item.

The paper (section 5.3) only *describes* the disagreement between its two tracks. This module
measures it on the per-item files the two tracks write (`track_a/scores.jsonl`,
`track_b/judgments.jsonl`), with the rank correlations of `evalkit.stats`:

* rank correlation (Spearman's rho and Kendall's tau-b) of each metric with each judge dimension,
  per model, pooled over both models, and on the paired differences (fine-tuned minus base, per
  item) -- the last one asks "when a metric says the fine-tuned answer got better, does the judge?";
* how often the two tracks prefer the same model on an item, with ties counted separately;
* the items on which they disagree most (see `disagreement_scores`).

Every function here is pure (lists and dicts in, dicts out); `analyse` is the one entry point.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from evalkit.stats import kendall_tau_b, spearman

METRICS = ("bleu", "rouge1", "rouge2", "rougeL", "meteor")
DIMENSIONS = ("accuracy", "comprehensiveness", "helpfulness", "relevance")


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


# ---- grounding: which track follows the clinical content? ------------------------------------------------

GROUNDING = ("diagnosis_correct", "diagnosis_mentioned", "tests_recall", "tests_precision", "medications_recall",
             "medications_precision")


def grounding_scores(rows: list[dict]) -> dict[tuple[str, str], dict[str, float | None]]:
    """`grounding.jsonl` rows -> {(id, model): {field: value or None}}; ungrounded items are left out."""
    out = {}
    for r in rows:
        if r.get("reference_condition") is None:
            continue
        out[(str(r["id"]), str(r["model"]))] = {g: None if r.get(g) is None else float(r[g]) for g in GROUNDING}
    return out


def _track_vs_grounding(scores: dict, names, ground: dict, base: str, finetuned: str) -> dict:
    """One track's scores against every grounding field: correlations and right-diagnosis preference."""
    ids = sorted({i for (i, _m) in ground} & {i for (i, _m) in scores}, key=_id_key)
    both = [i for i in ids if all((i, m) in scores and (i, m) in ground for m in (base, finetuned))]
    correlations, right = {}, {}
    for n in names:
        correlations[n] = {}
        for g in GROUNDING:
            keys = [(i, m) for i in both for m in (base, finetuned) if ground[(i, m)][g] is not None]
            paired = [i for i in both if ground[(i, base)][g] is not None and ground[(i, finetuned)][g] is not None]
            correlations[n][g] = {
                "pooled": asdict(spearman([scores[k][n] for k in keys], [ground[k][g] for k in keys])),
                "paired_difference": asdict(spearman(
                    [scores[(i, finetuned)][n] - scores[(i, base)][n] for i in paired],
                    [ground[(i, finetuned)][g] - ground[(i, base)][g] for i in paired]))}
        c = {"agree": 0, "disagree": 0, "tie": 0}
        for i in both:
            right_model = _sign(ground[(i, finetuned)]["diagnosis_correct"] - ground[(i, base)]["diagnosis_correct"])
            if right_model == 0:
                continue  # both right or both wrong: the diagnosis does not pick a model
            pref = _sign(scores[(i, finetuned)][n] - scores[(i, base)][n])
            c["tie" if pref == 0 else "agree" if pref == right_model else "disagree"] += 1
        decisive = c["agree"] + c["disagree"]
        right[n] = {**c, "rate": c["agree"] / decisive if decisive else None}
    rates = [r["rate"] for r in right.values() if r["rate"] is not None]
    rhos = [correlations[n]["diagnosis_correct"]["paired_difference"]["stat"] for n in names]
    rhos = [r for r in rhos if r is not None]
    return {"n_items": len(both),
            "n_separating": sum(1 for i in both if ground[(i, base)]["diagnosis_correct"]
                                != ground[(i, finetuned)]["diagnosis_correct"]),
            "correlations": correlations, "right_diagnosis": right,
            "mean_right_diagnosis_rate": sum(rates) / len(rates) if rates else None,
            "mean_paired_rho_diagnosis": sum(rhos) / len(rhos) if rhos else None}


def grounded_agreement(tracks: dict[str, tuple[dict, tuple[str, ...]]], grounding_rows: list[dict],
                       base: str = "base", finetuned: str = "finetuned") -> dict:
    """Which track follows the grounded clinical scores, and by how much.

    Args:
        tracks: {track label: (scores {(id, model): {name: value}}, score names)} for the tracks that ran,
            e.g. {"Track A": (metric_scores(rows), METRICS), "Track B": (judge_scores(rows), DIMENSIONS)}.
        grounding_rows: rows of `grounding.jsonl`.

    Returns:
        {"tracks": {label: per-track dict}, "summary": one sentence with the numbers}. The per-track dict
        holds Spearman's rho of every score with every grounding field (pooled over both models' answers,
        and on the paired differences), and on the items where exactly one model named the reference
        diagnosis, how often each score prefers that model (`right_diagnosis`, ties apart).
    """
    ground = grounding_scores(grounding_rows)
    per = {label: _track_vs_grounding(scores, names, ground, base, finetuned)
           for label, (scores, names) in tracks.items() if scores}
    return {"tracks": per, "summary": _verdict(per)}


def _verdict(per: dict) -> str:
    if not per:
        return "No track's scores could be compared with the grounded scores."
    n = max(t["n_separating"] for t in per.values())
    parts = [f"{label} prefers the model that named the reference diagnosis on "
             + (f"{t['mean_right_diagnosis_rate']:.0%}" if t["mean_right_diagnosis_rate"] is not None else "n/a")
             + " of the decisive comparisons (paired-difference Spearman with diagnosis_correct "
             + (f"{t['mean_paired_rho_diagnosis']:+.2f}" if t["mean_paired_rho_diagnosis"] is not None else "n/a")
             + ")" for label, t in per.items()]
    ranked = sorted((t["mean_right_diagnosis_rate"], label) for label, t in per.items()
                    if t["mean_right_diagnosis_rate"] is not None)
    if n == 0 or not ranked:
        return (f"On no grounded item does exactly one model name the reference diagnosis, so no track can be "
                f"checked against it; {'; '.join(parts)}.")
    if len(ranked) == 1:
        return f"On the {n} items where exactly one model names the reference diagnosis, {parts[0]}."
    return (f"On the {n} items where exactly one model names the reference diagnosis, "
            f"{'; '.join(parts)}, each a mean over the track's scores: {_tail(per, ranked)}. {RATE_VS_RHO}")


def _tail(per: dict, ranked: list[tuple[float, str]]) -> str:
    """Which track follows the grounded scores more, by the rate and by the paired Spearman rho together: a
    tie in the rate is not called equal agreement when the rhos differ."""
    best = ranked[-1][1] if ranked[-1][0] != ranked[-2][0] else None
    rhos = sorted((t["mean_paired_rho_diagnosis"], label) for label, t in per.items()
                  if t["mean_paired_rho_diagnosis"] is not None)
    closer = rhos[-1][1] if len(rhos) > 1 and round(rhos[-1][0], 2) != round(rhos[-2][0], 2) else None
    versus = f"Spearman {rhos[-1][0]:+.2f} against {rhos[-2][0]:+.2f}" if closer else ""
    if best and closer in (None, best):
        return f"{best} agrees with the grounded scores more"
    if best:
        return (f"{best} prefers the right-diagnosis model more often, while {closer} follows the grounded "
                f"differences more closely ({versus})")
    if closer:
        return (f"the tracks prefer the right-diagnosis model equally often ({ranked[-1][0]:.0%}), but {closer} "
                f"follows the grounded differences more closely ({versus})")
    return "the tracks agree with it equally"


# Why a high rate can stand beside a small or negative rho: they are computed on different items.
RATE_VS_RHO = ("(The rate counts only those decisive items; the Spearman correlation ranks the paired differences "
               "of all grounded items, most of which are ties in diagnosis_correct, so the two can differ in sign.)")
