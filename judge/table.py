"""Table 2 as the paper prints it (mean 1-5 score per dimension per system, p-values), plus N,
parse failures, self-consistency over repeats and pairwise position bias."""
from __future__ import annotations

import warnings
from itertools import combinations
from statistics import mean

from scipy import stats

from judge.rubric import DIMENSIONS, TITLES


def _item_scores(rows: list[dict], model: str) -> dict[str, dict[str, float]]:
    """{id: {dimension: mean over the ok repeats}} for one system; ids with no ok judgment are absent."""
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        if row["model"] == model and row["status"] == "ok":
            by_id.setdefault(row["id"], []).append(row)
    return {i: {d: mean(r[d] for r in rs) for d in DIMENSIONS} for i, rs in by_id.items()}


def mann_whitney_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Mann-Whitney U p-value (unpaired, as the paper used); None with fewer than 2 each."""
    if len(a) < 2 or len(b) < 2:
        return None
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)


def wilcoxon_p(a: list[float], b: list[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value on paired scores (zero differences dropped, scipy's default).

    1.0 when every pair is tied (no evidence of a difference); None with fewer than 2 pairs.
    """
    if len(a) < 2:
        return None
    if all(x == y for x, y in zip(a, b)):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.wilcoxon(a, b, alternative="two-sided").pvalue)


def self_consistency(rows: list[dict], model: str) -> dict:
    """With repeats: per dimension, the share of items whose repeats all agree and the mean |difference|."""
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        if row["model"] == model and row["status"] == "ok":
            by_id.setdefault(row["id"], []).append(row)
    groups = [rs for rs in by_id.values() if len(rs) >= 2]
    out = {"items": len(groups)}
    for d in DIMENSIONS:
        if not groups:
            out[d] = {"exact_agreement": None, "mean_abs_diff": None}
            continue
        agree = [len({r[d] for r in rs}) == 1 for rs in groups]
        diffs = [abs(x[d] - y[d]) for rs in groups for x, y in combinations(rs, 2)]
        out[d] = {"exact_agreement": sum(agree) / len(agree), "mean_abs_diff": mean(diffs)}
    return out


def position_bias(pair_rows: list[dict], a: str, b: str) -> dict:
    """Pairwise results of systems `a` and `b`, each item judged in both orders.

    An item (per repeat) is consistent when both orders name the same winner (or both a tie);
    `position_bias_rate` is the share of inconsistent items, split into first- and second-position
    preferences. Wins count consistent verdicts only.
    """
    by_item: dict[tuple, dict] = {}
    for row in pair_rows:
        if set(row["models"]) == {a, b}:
            by_item.setdefault((row["id"], row["repeat"]), {})[tuple(row["models"])] = row
    both = [v for v in by_item.values() if len(v) == 2 and all(r["status"] == "ok" for r in v.values())]
    wins = {a: 0, b: 0, "tie": 0}
    inconsistent = first = second = 0
    for orders in both:
        ab, ba = orders[(a, b)], orders[(b, a)]
        if ab["winner_model"] == ba["winner_model"]:
            wins[ab["winner_model"]] += 1
            continue
        inconsistent += 1
        first += ab["winner"] == "A" and ba["winner"] == "A"
        second += ab["winner"] == "B" and ba["winner"] == "B"
    n = len(both)
    failed = sum(r["status"] != "ok" for v in by_item.values() for r in v.values())
    return {"a": a, "b": b, "n": n, "wins_a": wins[a], "wins_b": wins[b], "ties": wins["tie"],
            "inconsistent": inconsistent, "position_bias_rate": inconsistent / n if n else None,
            "prefers_first": first, "prefers_second": second, "failures": failed}


def table2(rows: list[dict], models: list[str], repeats: int = 1, pair_rows: list[dict] | None = None,
           judge_model: str = "", usage: dict | None = None, served_models: list[str] | None = None) -> dict:
    """All numbers of Table 2; the first system is the baseline that the p-values compare against.

    `served_models` are the model names the endpoint reported in its answers (e.g. the dated snapshot
    behind "gpt-4o", or the stand-in's label), shown next to the requested `judge_model`.
    """
    missing = sorted({k for r in rows for k in ("model", "status", "id") if k not in r})
    if missing:
        raise ValueError(f"table2: every row needs 'id', 'model' and 'status' (missing {missing})")
    scores = {m: _item_scores(rows, m) for m in models}
    base = models[0]
    table = {"judge_model": judge_model, "served_models": served_models or [], "models": models, "baseline": base, "repeats": repeats,
             "dimensions": list(DIMENSIONS), "mean": {}, "n": {}, "parse_failures": {}, "errors": {},
             "p_values": {}}
    for m in models:
        table["mean"][m] = {d: (mean(s[d] for s in scores[m].values()) if scores[m] else None) for d in DIMENSIONS}
        table["n"][m] = len(scores[m])
        table["parse_failures"][m] = sum(r["model"] == m and r["status"] == "parse_failure" for r in rows)
        table["errors"][m] = sum(r["model"] == m and r["status"] == "error" for r in rows)
    for m in models[1:]:
        paired = sorted(set(scores[base]) & set(scores[m]))
        table["p_values"][m] = {"n_pairs": len(paired), **{d: {
            "mann_whitney": mann_whitney_p([s[d] for s in scores[base].values()], [s[d] for s in scores[m].values()]),
            "wilcoxon": wilcoxon_p([scores[base][i][d] for i in paired], [scores[m][i][d] for i in paired]),
        } for d in DIMENSIONS}}
    if repeats > 1:
        table["self_consistency"] = {m: self_consistency(rows, m) for m in models}
    if pair_rows:
        table["pairwise"] = [position_bias(pair_rows, a, b) for a, b in combinations(models, 2)]
    if usage is not None:
        table["usage"] = usage
    return table


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def _p(value) -> str:
    """A p-value as evalkit's Table 1 prints it: 4 decimals, `<0.0001` below that, `n/a` when None."""
    if value is None:
        return "n/a"
    return "<0.0001" if value < 0.0001 else f"{value:.4f}"


def render_markdown(table: dict, title: str | None = None, failures: bool = True) -> str:
    """Table 2 in Markdown, laid out as in the paper, followed by the extra sections that apply.

    `title` replaces the first line (Track C prints the clinicians' scores in this layout; `{n}` in it
    is replaced by the N text); `failures=False` leaves out the parse-failure and request-error rows.
    """
    models, base = table["models"], table["baseline"]
    ns = sorted(set(table["n"].values()))
    n_text = f"N = {ns[0]}" if len(ns) == 1 else "N = " + ", ".join(f"{m}: {table['n'][m]}" for m in models)
    served = [s for s in table.get("served_models", []) if s != table["judge_model"]]
    judge = table["judge_model"] + (f" (served as {', '.join(served)})" if served else "")
    head_line = (title.replace("{n}", n_text) if title is not None else
                 f"Table 2: LLM-judge evaluation (mean scores out of 5, {n_text}); judge: {judge}"
                 + (f"; {table['repeats']} repeats averaged per item" if table["repeats"] > 1 else ""))
    lines = [head_line, ""]
    head = ["Evaluation Dimension", *[f"{m} (baseline)" if m == base else m for m in models]]
    for m in models[1:]:
        vs = "" if len(models) == 2 else f" {m} vs {base}"
        head += [f"p Mann-Whitney{vs}", f"p Wilcoxon{vs}"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in table["dimensions"]:
        cells = [TITLES[d], *[_fmt(table["mean"][m][d]) for m in models]]
        for m in models[1:]:
            p = table["p_values"][m][d]
            cells += [_p(p["mann_whitney"]), _p(p["wilcoxon"])]
        lines.append("| " + " | ".join(cells) + " |")
    pad = [""] * (len(head) - 1 - len(models))
    lines.append("| N (items scored) | " + " | ".join([str(table["n"][m]) for m in models] + pad) + " |")
    if failures:
        lines.append("| Parse failures | " + " | ".join([str(table["parse_failures"][m]) for m in models] + pad) + " |")
        lines.append("| Request errors | " + " | ".join([str(table["errors"][m]) for m in models] + pad) + " |")
    lines += ["", "p-values: two-sided Mann-Whitney U on item scores (unpaired, as in the paper) and two-sided "
              "Wilcoxon signed-rank on the items both systems have scores for ("
              + ", ".join(f"{table['p_values'][m]['n_pairs']} pairs" for m in models[1:]) + ")."
              + (" Parse failures and errors are excluded from the means, never imputed." if failures else "")]
    if "self_consistency" in table:
        lines += ["", f"Judge self-consistency over {table['repeats']} repeats (share of items with identical "
                  "scores in every repeat; mean |difference| between repeats):", "",
                  "| System | items | " + " | ".join(TITLES[d] for d in table["dimensions"]) + " |",
                  "|" + "---|" * (2 + len(table["dimensions"]))]
        for m, sc in table["self_consistency"].items():
            cells = [f"{_fmt(sc[d]['exact_agreement'])} / {_fmt(sc[d]['mean_abs_diff'])}" for d in table["dimensions"]]
            lines.append(f"| {m} | {sc['items']} | " + " | ".join(cells) + " |")
    if "pairwise" in table:
        lines += ["", "Pairwise comparison, each item judged in both orders (wins count consistent verdicts; "
                  "one judgment per item and repeat):", "",
                  "| A | B | judgments | A wins | B wins | ties | inconsistent | position-bias rate | prefers 1st | "
                  "prefers 2nd | failures |", "|" + "---|" * 11]
        for p in table["pairwise"]:
            lines.append(f"| {p['a']} | {p['b']} | {p['n']} | {p['wins_a']} | {p['wins_b']} | {p['ties']} | "
                         f"{p['inconsistent']} | {_fmt(p['position_bias_rate'])} | {p['prefers_first']} | "
                         f"{p['prefers_second']} | {p['failures']} |")
    if "usage" in table:
        u = table["usage"]
        cost = _cost(u)
        lines += ["", f"Token usage: {u['prompt_tokens']} prompt + {u['completion_tokens']} completion tokens "
                  f"over {u.get('requests', 0)} HTTP requests; estimated cost {cost}."]
    return "\n".join(lines) + "\n"


def _cost(usage: dict) -> str:
    """The estimated cost as text: dollars, not applicable (the stand-in), or unknown (no price)."""
    if usage.get("cost_note"):
        return usage["cost_note"]
    if usage["estimated_cost_usd"] is None:
        return "unknown (no price for this model; pass --price IN,OUT)"
    return f"${usage['estimated_cost_usd']:.4f}"
