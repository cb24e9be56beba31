"""Table 3: clinical grounding per model, in Table 1's layout, with proportions and paired tests.

``build_table3`` computes everything into one JSON-able dict (``table3.json``); ``render_table3``
formats that dict only. Only grounded items enter (the reference names a database condition); a null
ratio (zero denominator) leaves its item out of that column for that model. Per column, the model
rows, Difference and the paper's Mann-Whitney p use each model's defined values (so over different items
where a ratio is undefined for one model only); the row "Difference on the common items" and the paired
tests use the items defined for both models. Diagnosis fields are 0/1: their means are accuracies, shown
with 95% Wilson intervals, and McNemar's exact test gives the paired change.
"""
from __future__ import annotations

from typing import Sequence

from evalkit import stats
from evalkit.grounding import BINARY_FIELDS, FIELDS
from evalkit.records import Selection, System, check_scoring_input
from evalkit.table import _f, _p, _pct, _row, paired_tests, unpaired_comparison

COLUMNS = (*FIELDS, "unsupported_medications")
LABELS = {"diagnosis_correct": "Diagnosis correct", "diagnosis_mentioned": "Diagnosis mentioned",
          "tests_recall": "Tests recall", "tests_precision": "Tests precision",
          "medications_recall": "Medications recall", "medications_precision": "Medications precision",
          "unsupported_medications": "Unsupported medications (count)"}


def _value(row: dict, column: str) -> float | None:
    v = row[column]
    return float(len(v)) if column == "unsupported_medications" else (None if v is None else float(v))


def build_table3(rows: Sequence[dict], systems: Sequence[System], selection: Selection, ungrounded: Sequence[dict],
                 database: dict, seed: int = 0, n_bootstrap: int = 10_000, n_permutations: int = 10_000) -> dict:
    """Table 3's numbers from ``ground_systems``'s rows (ungrounded rows are skipped).

    Args:
        database: what to print about the database (path, sha256, counts, dropped forms).
    """
    check_scoring_input("build_table3", systems, selection)
    skip = {u["id"] for u in ungrounded}
    ids = [i for i in selection.ids if i not in skip]
    by = {(r["id"], r["model"]): r for r in rows}
    values = {s.model: {c: {i: _value(by[i, s.model], c) for i in ids} for c in COLUMNS} for s in systems}
    defined = {m: {c: [i for i in ids if v[c][i] is not None] for c in COLUMNS} for m, v in values.items()}
    out_systems = []
    for s in systems:
        means, props = {}, {}
        for c in COLUMNS:
            xs = [values[s.model][c][i] for i in defined[s.model][c]]
            means[c] = sum(xs) / len(xs) if xs else None
        for c in BINARY_FIELDS:
            k, n = int(sum(values[s.model][c][i] for i in ids)), len(ids)
            props[c] = {"successes": k, "n": n, "proportion": k / n, "wilson_ci95": list(stats.wilson_interval(k, n))}
        out_systems.append({"model": s.model, "file": s.path, "n": len(ids), "means": means, "proportions": props,
                            "n_defined": {c: len(defined[s.model][c]) for c in COLUMNS},
                            "n_undefined": {c: len(ids) - len(defined[s.model][c]) for c in COLUMNS}})
    base = systems[0].model
    comparisons = []
    for s in systems[1:]:
        per = {c: _compare(values[base][c], values[s.model][c], defined[base][c], defined[s.model][c], c,
                           seed, n_bootstrap, n_permutations) for c in COLUMNS}
        comparisons.append({"model": s.model, "baseline": base, "columns": per})
    sel = selection.to_json()
    return {
        "columns": list(COLUMNS), "labels": LABELS, "baseline": base, "n": len(ids),
        "systems": out_systems, "comparisons": comparisons,
        "exclusions": {**{k: v for k, v in sel.items() if k not in ("exclusions", "kept_truncated")},
                       "n_ungrounded": len(ungrounded), "ungrounded_ids": [u["id"] for u in ungrounded],
                       "n_grounded": len(ids)},
        "coverage": len(ids) / len(selection.ids),
        "database": database, "settings": {"seed": seed, "bootstrap": n_bootstrap, "permutations": n_permutations},
    }


def _compare(x: dict, y: dict, dx: list, dy: list, column: str, seed: int, n_bootstrap: int,
             n_permutations: int) -> dict:
    both = [i for i in dx if y[i] is not None]
    out = {"n_baseline": len(dx), "n": len(dy), "n_pairs": len(both)}
    if dx and dy:
        out.update(unpaired_comparison([x[i] for i in dx], [y[i] for i in dy]))
    if both:
        xp, yp = [x[i] for i in both], [y[i] for i in both]
        out["paired_mean_difference"] = sum(b - a for a, b in zip(xp, yp)) / len(both)
        out.update(paired_tests(xp, yp, seed, n_bootstrap, n_permutations))
        if column in BINARY_FIELDS:
            b, c = stats.discordant_pairs(xp, yp)
            mc = stats.mcnemar_exact(xp, yp)
            out["mcnemar"] = {"b": b, "c": c, "statistic": mc.statistic, "p": mc.pvalue, "method": mc.method}
    return out


def _get(cell: dict, *keys: str):
    for k in keys:
        if cell is None or k not in cell:
            return None
        cell = cell[k]
    return cell


def render_table3(t: dict, names: dict | None = None) -> str:
    """Table 3 (Table 1's layout), the diagnosis proportions and Table 3b (paired tests) as Markdown.

    Args:
        t: what `build_table3` returns.
        names: display names of the models (a report's "Base model (baseline)", "Fine-tuned model");
            default: the model names, the baseline's marked "(baseline)".
    """
    cols, labels, base = t["columns"], t["labels"], t["baseline"]
    shown = names or {s["model"]: f"{s['model']} (baseline)" if s["model"] == base else s["model"] for s in t["systems"]}
    head = [_row("Model", [labels[c] for c in cols]), "|---|" + "---:|" * len(cols)]
    lines = ["# Table 3: Clinical grounding against the disease database", "", *head]
    for s in t["systems"]:
        lines.append(_row(shown.get(s["model"], s["model"]), [_f(s["means"][c], ".4f") for c in cols]))
    several = len(t["comparisons"]) > 1
    for cmp in t["comparisons"]:
        tag, cc = (f" ({cmp['model']})" if several else ""), cmp["columns"]
        lines.append(_row(f"Difference{tag}", [_f(_get(cc[c], "difference"), "+.4f") for c in cols]))
        lines.append(_row(f"Difference on the common items{tag}",
                          [_f(_get(cc[c], "paired_mean_difference"), "+.4f") for c in cols]))
        lines.append(_row(f"Improvement (%){tag}", [_pct(_get(cc[c], "improvement_pct")) for c in cols]))
        lines.append(_row(f"p-value (Mann-Whitney){tag}",
                          [_pv(_get(cc[c], "mann_whitney", "p")) for c in cols]))
    lines.append(_row("N defined (" + " / ".join(s["model"] for s in t["systems"]) + ")",
                      [" / ".join(str(s["n_defined"][c]) for s in t["systems"]) for c in cols]))
    lines += ["", *_notes(t)]
    for label, ids in (("Excluded ids", t["exclusions"]["excluded_ids"]),
                       ("Ungrounded ids", t["exclusions"]["ungrounded_ids"])):
        if ids:
            more = f" ... and {len(ids) - 50} more" if len(ids) > 50 else ""
            lines += ["", f"{label}: " + ", ".join(f"`{i}`" for i in ids[:50]) + more]
    lines += ["", "## Diagnosis accuracy: proportions with 95% Wilson intervals", "",
              _row("Model", ["Diagnosis correct", "95% Wilson CI", "Diagnosis mentioned", "95% Wilson CI"]),
              "|---|---:|---:|---:|---:|"]
    for s in t["systems"]:
        cells = []
        for c in ("diagnosis_correct", "diagnosis_mentioned"):
            p = s["proportions"][c]
            lo, hi = p["wilson_ci95"]
            cells += [f"{p['successes']}/{p['n']} = {p['proportion']:.4f}", f"[{lo:.4f}, {hi:.4f}]"]
        lines.append(_row(shown.get(s["model"], s["model"]), cells))
    for cmp in t["comparisons"]:
        cells = []
        for c in ("diagnosis_correct", "diagnosis_mentioned"):
            mc = _get(cmp["columns"][c], "mcnemar")
            p_text = _p(mc["p"]) if mc else ""
            cells += ["n/a", "n/a"] if mc is None else [f"b = {mc['b']}, c = {mc['c']}",
                                                        "p " + (p_text if p_text[0] == "<" else "= " + p_text)]
        lines.append(_row(f"McNemar exact, {cmp['model']} vs {base}", cells))
    lines += ["", f"b: pairs where only {base} is right; c: pairs where only the compared model is right. "
              "McNemar's exact test: two-sided binomial test of b against b + c with probability 1/2."]
    for cmp in t["comparisons"]:
        lines += _paired_table(cmp, cols, labels)
    return "\n".join(lines) + "\n"


def _pv(p: float | None) -> str:
    return "n/a" if p is None else _p(p)


def _notes(t: dict) -> list[str]:
    ex, db = t["exclusions"], t["database"]
    n_ambiguous = sum(d["reason"] == "ambiguous" for d in db.get("dropped_forms", []))
    n_shared = len(db.get("dropped_forms", [])) - n_ambiguous
    counts = ", ".join(f"{v} {k}" for k, v in ex["counts"].items() if v) or "none"
    undefined = "; ".join(f"{s['model']}: " + (", ".join(f"{s['n_undefined'][c]} {c}" for c in FIELDS
                                                         if s["n_undefined"][c]) or "none") for s in t["systems"])
    return [f"N = {t['n']} grounded items per system, the same ids for every system (paired). {ex['n_ids']} ids "
            f"in the files; {ex['n_excluded']} excluded for all systems as in Table 1 (reasons by (id, system): "
            f"{counts}); {ex['n_ungrounded']} ungrounded: the reference names no database condition "
            f"(coverage {t['coverage'] * 100:.1f}% of the scored items). Every exclusion is listed in exclusions.json.",
            "",
            "Reference condition: the first database condition the reference names. Diagnosis correct: the "
            "response's first condition is it; mentioned: it names it anywhere. Recall: of the database names "
            "the reference mentions, the share the response mentions. Precision: of the database names the "
            "response mentions, the share the database lists for the reference condition. Unsupported "
            "medications: database medications in the response not listed for the reference condition "
            "(count per answer).",
            "",
            "A ratio with a zero denominator is undefined (null) and left out of its column: recall when the "
            "reference names no test or medication, precision when the response names none. Undefined: "
            f"{undefined or 'none'}. So a column's means, its Difference and Mann-Whitney p are over each "
            "model's own defined items (N defined), which differ where the Ns differ; the Difference on the "
            "common items is the mean paired difference over the items defined for both (Table 3b's N pairs).",
            "",
            f"Database: {db.get('path')} (sha256 {str(db.get('sha256'))[:12]}...), {db.get('conditions')} "
            f"conditions, {db.get('tests')} tests, {db.get('medications')} medications; "
            f"{n_ambiguous} ambiguous name forms match nothing and {n_shared} shared ones go to one owner "
            "(all listed in table3.json). "
            "p-value: two-sided Mann-Whitney U as in the paper (unpaired); paired tests below."]


def _paired_table(cmp: dict, cols: Sequence[str], labels: dict) -> list[str]:
    cc = cmp["columns"]

    def cells(*keys: str, fmt: str) -> list[str]:
        return [_f(_get(cc[c], *keys), fmt) for c in cols]

    ci = [("n/a" if _get(cc[c], "bootstrap_ci95") is None else
           f"[{cc[c]['bootstrap_ci95'][0]:+.4f}, {cc[c]['bootstrap_ci95'][1]:+.4f}]") for c in cols]
    return ["", f"## Table 3b: paired tests, {cmp['model']} vs {cmp['baseline']}", "",
            _row("Statistic", [labels[c] for c in cols]), "|---|" + "---:|" * len(cols),
            _row("N pairs (defined for both)", [str(cc[c]["n_pairs"]) for c in cols]),
            _row("Mean paired difference", cells("paired_mean_difference", fmt="+.4f")),
            _row("Paired bootstrap 95% CI", ci),
            _row("Wilcoxon signed-rank p", [_pv(_get(cc[c], "wilcoxon", "p")) for c in cols]),
            _row("Approximate randomisation p", [_pv(_get(cc[c], "approx_randomization", "p")) for c in cols]),
            _row("McNemar exact p", [_pv(_get(cc[c], "mcnemar", "p")) if c in BINARY_FIELDS else "-" for c in cols]),
            _row("Matched-pairs rank-biserial r", cells("matched_pairs_rank_biserial", fmt="+.3f")),
            _row("Cohen's d_z", cells("cohens_dz", fmt="+.3f")),
            _row("Rank-biserial r (Mann-Whitney)", cells("rank_biserial", fmt="+.3f")),
            "", f"Effect sizes and differences: positive favours {cmp['model']} (for unsupported medications, "
            "positive means more of them)."]
