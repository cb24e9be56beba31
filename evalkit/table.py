"""Table 1 as the paper prints it (means, difference, improvement, Mann-Whitney p), plus paired tests.

``build_tables`` computes everything into one JSON-able dict (written as ``table1.json``);
``render_markdown`` formats that dict only, so ``table1.md`` and ``table1.json`` cannot disagree.
The first system is the baseline; every other system is compared with it on the same items.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from evalkit import stats
from evalkit.records import Selection, System
from evalkit.score import METRIC_LABELS, METRICS, ScoreConfig


def build_tables(rows: Sequence[dict], systems: Sequence[System], selection: Selection, config: ScoreConfig,
                 seed: int = 0, n_bootstrap: int = 10_000, n_permutations: int = 10_000) -> dict:
    """Means per system and, per compared system, Table 1's rows and the paired tests per metric."""
    by_model = {s.model: {m: np.array([r[m] for r in rows if r["model"] == s.model]) for m in METRICS}
                for s in systems}
    base = systems[0].model
    comparisons = []
    for system in systems[1:]:
        per_metric = {m: compare_scores(by_model[base][m], by_model[system.model][m], seed, n_bootstrap,
                                        n_permutations) for m in METRICS}
        comparisons.append({"model": system.model, "baseline": base, "metrics": per_metric})
    return {
        "metrics": list(METRICS), "labels": METRIC_LABELS, "baseline": base, "n": len(selection.ids),
        "systems": [{"model": s.model, "file": s.path, "n": len(by_model[s.model]["bleu"]),
                     "means": {m: float(by_model[s.model][m].mean()) for m in METRICS}} for s in systems],
        "comparisons": comparisons,
        "exclusions": {k: v for k, v in selection.to_json().items() if k not in ("exclusions", "kept_truncated")},
        "settings": {**config.describe(), "seed": seed, "bootstrap": n_bootstrap, "permutations": n_permutations},
        "figures": [], "figure_note": None,
    }


def compare_scores(x, y, seed: int = 0, n_bootstrap: int = 10_000, n_permutations: int = 10_000) -> dict:
    """One Table 1 column: ``unpaired_comparison`` and ``paired_tests`` of the same items' scores."""
    return {**unpaired_comparison(x, y), **paired_tests(x, y, seed, n_bootstrap, n_permutations)}


def unpaired_comparison(x, y) -> dict:
    """Means, difference, improvement and the paper's Mann-Whitney test of y (compared) vs x (baseline)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    mx, my = float(x.mean()), float(y.mean())
    mwu = stats.mann_whitney_u(x, y)
    return {"baseline_mean": mx, "mean": my, "difference": my - mx,
            "improvement_pct": (my - mx) / mx * 100 if mx != 0 else None,
            "mann_whitney": {"U": mwu.statistic, "p": mwu.pvalue, "method": mwu.method},
            "rank_biserial": stats.rank_biserial(x, y)}


def paired_tests(x, y, seed: int = 0, n_bootstrap: int = 10_000, n_permutations: int = 10_000) -> dict:
    """Table 1b's tests of d = y - x on paired scores (same items, same order)."""
    wil = stats.wilcoxon_signed_rank(x, y)
    ar = stats.approximate_randomization(x, y, n_permutations, seed=seed)
    return {"wilcoxon": {"T": wil.statistic, "p": wil.pvalue, "method": wil.method},
            "bootstrap_ci95": list(stats.paired_bootstrap_ci(x, y, n_bootstrap, 0.95, seed=seed)),
            "approx_randomization": {"p": ar.pvalue, "permutations": n_permutations},
            "matched_pairs_rank_biserial": stats.matched_pairs_rank_biserial(x, y),
            "cohens_dz": _none_if_nan(stats.cohens_dz(x, y))}


def _none_if_nan(v: float) -> float | None:
    return None if v != v else v


def _row(label: str, cells: Sequence[str]) -> str:
    return "| " + " | ".join([label, *cells]) + " |"


def _p(p: float) -> str:
    return "<0.0001" if p < 0.0001 else f"{p:.4f}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}%"  # n/a: baseline mean 0


def _f(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def render_markdown(t: dict) -> str:
    """Table 1 (paper layout) and Table 1b (paired tests) as Markdown, with N, exclusions and notes."""
    metrics, labels, base = t["metrics"], t["labels"], t["baseline"]
    head = [_row("Model", [labels[m] for m in metrics]), "|---|" + "---:|" * len(metrics)]
    lines = ["# Table 1: Performance comparison of models across automatic similarity metrics", "", *head]
    for s in t["systems"]:
        name = f"{s['model']} (baseline)" if s["model"] == base else s["model"]
        lines.append(_row(name, [f"{s['means'][m]:.4f}" for m in metrics]))
    several = len(t["comparisons"]) > 1
    for c in t["comparisons"]:
        tag = f" ({c['model']})" if several else ""
        cm = c["metrics"]
        lines.append(_row(f"Difference{tag}", [f"{cm[m]['difference']:+.4f}" for m in metrics]))
        lines.append(_row(f"Improvement (%){tag}", [_pct(cm[m]["improvement_pct"]) for m in metrics]))
        lines.append(_row(f"p-value (Mann-Whitney){tag}", [_p(cm[m]["mann_whitney"]["p"]) for m in metrics]))
    ex = t["exclusions"]
    counts = ", ".join(f"{v} {k}" for k, v in ex["counts"].items() if v) or "none"
    lines += ["", f"N = {t['n']} items per system, the same ids for every system (paired). "
              f"{ex['n_ids']} ids in the files; {ex['n_excluded']} excluded for all systems "
              f"(reasons by (id, system): {counts}; every one is listed in exclusions.json).", ""]
    if ex["excluded_ids"]:
        shown = ex["excluded_ids"][:50]
        more = f" ... and {len(ex['excluded_ids']) - 50} more" if len(ex["excluded_ids"]) > 50 else ""
        lines += ["Excluded ids: " + ", ".join(f"`{i}`" for i in shown) + more, ""]
    lines += _notes(t)
    for c in t["comparisons"]:
        lines += _paired_table(c, metrics, labels, t["n"])
    lines += ["", "## Figures", ""]
    lines += [f"![{f}]({f})" for f in t["figures"]] or [t["figure_note"] or "no figure"]
    return "\n".join(lines) + "\n"


def _notes(t: dict) -> list[str]:
    s = t["settings"]
    preset = {"sacrebleu": "as sacrebleu.sentence_bleu: 13a tokens, exp smoothing, effective order",
              "nltk": "as nltk sentence_bleu's defaults: whitespace tokens, no smoothing, so an item without "
                      "a matching 4-gram scores ~0"}[s["bleu_preset"]]
    smooth = f"; smoothing overridden: {s['bleu_smooth']}" if s["bleu_smooth"] else ""
    mwu = {c["metrics"][m]["mann_whitney"]["method"] for c in t["comparisons"] for m in t["metrics"]}
    tests = ["p-value: two-sided Mann-Whitney U as in the paper (" + "; ".join(sorted(mwu)) + "); it treats "
             "the two systems' scores as independent samples although they are paired. Paired tests below.", ""]
    return [f"BLEU: sentence BLEU per item on the 0-1 scale, preset `{s['bleu_preset']}` ({preset}{smooth}). "
            f"ROUGE: F-measure with beta = {s['rouge_beta']}, Porter stemming {'on' if s['stem'] else 'off'}. "
            f"METEOR: fragmentation penalty {'on' if s['meteor_penalty'] else 'off'}, WordNet synonyms "
            f"{'on' if s['meteor_synonyms'] else 'OFF'}." + (f" {s['meteor_note']}." if s["meteor_note"] else ""), "",
            *(tests if t["comparisons"] else ["One system: no comparison.", ""])]


def _paired_table(c: dict, metrics: Sequence[str], labels: dict, n: int) -> list[str]:
    cm = c["metrics"]
    ci = [f"[{cm[m]['bootstrap_ci95'][0]:+.4f}, {cm[m]['bootstrap_ci95'][1]:+.4f}]" for m in metrics]
    perms = cm[metrics[0]]["approx_randomization"]["permutations"]
    return ["", f"## Table 1b: paired tests, {c['model']} vs {c['baseline']} (N = {n} pairs)", "",
            _row("Statistic", [labels[m] for m in metrics]), "|---|" + "---:|" * len(metrics),
            _row("Mean difference", [f"{cm[m]['difference']:+.4f}" for m in metrics]),
            _row("Paired bootstrap 95% CI", ci),
            _row("Wilcoxon signed-rank p", [_p(cm[m]["wilcoxon"]["p"]) for m in metrics]),
            _row("Approximate randomisation p", [_p(cm[m]["approx_randomization"]["p"]) for m in metrics]),
            _row("Matched-pairs rank-biserial r", [f"{cm[m]['matched_pairs_rank_biserial']:+.3f}" for m in metrics]),
            _row("Cohen's d_z", [_f(cm[m]["cohens_dz"], "+.3f") for m in metrics]),
            _row("Rank-biserial r (Mann-Whitney)", [f"{cm[m]['rank_biserial']:+.3f}" for m in metrics]),
            "", f"Wilcoxon: zero differences dropped (Wilcoxon's rule, scipy's default). Bootstrap: "
            f"percentile interval of the mean difference. Randomisation: {perms} random sign flips of "
            "the paired differences, p = (1 + hits) / (1 + R). Effect sizes: positive favours "
            f"{c['model']}."]
