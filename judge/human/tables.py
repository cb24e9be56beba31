"""Table C: the clinicians' scores in Table 2's layout (judge/table.py builds and prints it), plus the
possible-harm flags; or, for a pairwise study, the preferences per pair of systems.

Pointwise: an item's score on a dimension is the mean of its raters' final scores (as Table 2 averages
a judge's repeats); the table's p-values compare each system with the baseline (the first pairs file)
as in Table 2. Pairwise: wins, ties, the share of verdicts for the answer shown as A (a position-bias
check: the sides are balanced, so about half is expected) and a two-sided binomial sign test on the
non-tied verdicts (scipy).
"""
from __future__ import annotations

from itertools import combinations

from scipy import stats

from judge.rubric import DIMENSIONS
from judge.table import render_markdown as render_table2
from judge.table import table2


def table_c(rows: list[dict], systems: list[str], raters: list[str], pairwise: bool) -> dict:
    """All numbers of Table C from the final ratings (export.rating_record's format)."""
    if pairwise:
        return {"mode": "pairwise", "systems": systems, "raters": raters,
                "pairs": [_pair_summary(rows, a, b) for a, b in combinations(systems, 2)]}
    judge_rows = [{"id": r["id"], "model": r["model"], "status": "ok", "repeat": 0, **{d: r[d] for d in DIMENSIONS}}
                  for r in rows]
    table = table2(judge_rows, systems, judge_model=f"{len(raters)} clinicians")
    table.update(mode="pointwise", raters=raters, harm={}, ratings={})
    for m in systems:
        mine = [r for r in rows if r["model"] == m]
        flagged_items = {r["id"] for r in mine if r["harm"]}
        table["ratings"][m] = len(mine)
        table["harm"][m] = {"flagged_ratings": sum(r["harm"] for r in mine), "ratings": len(mine),
                            "share": sum(r["harm"] for r in mine) / len(mine) if mine else None,
                            "items_flagged_by_any": len(flagged_items)}
    return table


def _pair_summary(rows: list[dict], a: str, b: str) -> dict:
    mine = [r for r in rows if {r["model_a"], r["model_b"]} == {a, b}]
    wins_a = sum(r["preferred_model"] == a for r in mine)
    wins_b = sum(r["preferred_model"] == b for r in mine)
    decided = wins_a + wins_b
    shown_a = sum(r["preference"] == "A" for r in mine)
    p = float(stats.binomtest(wins_a, decided).pvalue) if decided else None
    return {"a": a, "b": b, "n": len(mine), "wins_a": wins_a, "wins_b": wins_b, "ties": len(mine) - decided,
            "sign_test_p": p, "share_for_side_a": shown_a / decided if decided else None,
            "a_shown_as_a": sum(r["model_a"] == a for r in mine)}


def _f(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _p(v) -> str:
    return "n/a" if v is None else ("<0.0001" if v < 0.0001 else f"{v:.4f}")


def render_markdown(table: dict) -> str:
    """Table C in Markdown."""
    raters = ", ".join(table["raters"]) or "none yet"
    if table["mode"] == "pairwise":
        lines = [f"Table C: clinicians' blinded pairwise preferences (raters: {raters})", "",
                 "| System A | System B | comparisons | A better | B better | about the same | sign test p "
                 "| verdicts for the side shown as A |", "|" + "---|" * 8]
        for p in table["pairs"]:
            lines.append(f"| {p['a']} | {p['b']} | {p['n']} | {p['wins_a']} | {p['wins_b']} | {p['ties']} | "
                         f"{_p(p['sign_test_p'])} | {_f(p['share_for_side_a'])} |")
        lines += ["", "Sign test: two-sided binomial test of the non-tied verdicts (ties left out). The last "
                  "column is the share of non-tied verdicts that went to whichever answer was shown on the "
                  "left (A); sides are balanced, so a share far from 0.50 suggests position bias."]
        return "\n".join(lines) + "\n"
    title = (f"Table C: clinicians' blinded ratings (mean scores out of 5, {{n}}); raters: {raters}; "
             "each item's score is the mean of its raters' scores")
    lines = [render_table2(table, title=title, failures=False).rstrip("\n"), "",
             "| Could harm the patient | " + " | ".join(table["models"]) + " |", "|" + "---|" * (1 + len(table["models"]))]
    lines.append("| Ratings flagged | " + " | ".join(
        f"{table['harm'][m]['flagged_ratings']} of {table['harm'][m]['ratings']} ({_f(table['harm'][m]['share'])})"
        for m in table["models"]) + " |")
    lines.append("| Items flagged by at least one rater | " + " | ".join(
        str(table["harm"][m]["items_flagged_by_any"]) for m in table["models"]) + " |")
    return "\n".join(lines) + "\n"
