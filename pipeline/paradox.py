"""The paper's paradox, decided from a run's own figures: did fine-tuning teach the style but not the medicine?

The paper found the fine-tuned model closer to the reference answers by every lexical metric (Table 1)
while the judge rated it no better (Table 2). Grounding (Table 3) asks the clinical question directly:
does the answer name the right condition first (`diagnosis_correct`, evalkit/grounding.py)? The verdict:

- style learned: the paired bootstrap 95% CI of fine-tuned minus base lies above zero on at least
  `STYLE_MIN_METRICS` of Track A's five metrics (Table 1b);
- medicine learned: the share of answers that name the right condition first rose by at least
  `MEDICINE_MIN_RISE` (a proportion: 0.05 = 5 percentage points) and its paired 95% CI lies above zero
  (Table 3b).

"paradox" is style without medicine; "both", "neither" and "medicine only" are the other outcomes, and
"undecided" says which table is missing. `report.json` keeps the numbers and the sentence.
"""
from __future__ import annotations

from evalkit.score import METRIC_LABELS, METRICS

STYLE_MIN_METRICS = 3      # of Track A's five metrics: a majority
MEDICINE_MIN_RISE = 0.05   # 5 percentage points more answers naming the right condition first


def style_vs_medicine(table1: dict | None, table3: dict | None) -> dict:
    """The verdict and its one sentence from Table 1's and Table 3's dicts (`table1.json`, `table3.json`).

    Returns:
        {"verdict", "sentence", "style": {...} or None, "medicine": {...} or None, "thresholds": {...}}.
    """
    thresholds = {"style_min_metrics": STYLE_MIN_METRICS, "medicine_min_rise": MEDICINE_MIN_RISE}
    style = _style(table1) if table1 and table1.get("comparisons") else None
    medicine = _medicine(table3) if table3 and table3.get("comparisons") else None
    if style is None or medicine is None:
        missing = " and ".join(n for n, v in (("Track A", style), ("grounding", medicine)) if v is None)
        return {"verdict": "undecided", "style": style, "medicine": medicine, "thresholds": thresholds,
                "sentence": f"Whether fine-tuning taught the style but not the medicine (the paper's paradox) "
                            f"cannot be decided: {missing} did not run."}
    verdict = {(True, False): "paradox", (True, True): "both", (False, False): "neither",
               (False, True): "medicine only"}[style["learned"], medicine["learned"]]
    return {"verdict": verdict, "style": style, "medicine": medicine, "thresholds": thresholds,
            "sentence": _sentence(verdict, style, medicine)}


def _style(table1: dict) -> dict:
    cmp = table1["comparisons"][0]["metrics"]
    above = [m for m in METRICS if cmp[m]["bootstrap_ci95"][0] > 0]
    return {"metrics_above_zero": above, "n_metrics": len(METRICS), "n": table1.get("n"),
            "learned": len(above) >= STYLE_MIN_METRICS}


def _medicine(table3: dict) -> dict:
    base, tuned = table3["comparisons"][0]["baseline"], table3["comparisons"][0]["model"]
    share = {s["model"]: s["proportions"]["diagnosis_correct"]["proportion"] for s in table3["systems"]}
    cell = table3["comparisons"][0]["columns"]["diagnosis_correct"]
    rise = share[tuned] - share[base]
    ci = cell.get("bootstrap_ci95")
    return {"base": share[base], "finetuned": share[tuned], "rise": rise, "ci95": ci, "n": table3.get("n"),
            "learned": rise >= MEDICINE_MIN_RISE and ci is not None and ci[0] > 0}


def _sentence(verdict: str, style: dict, medicine: dict) -> str:
    k, n = len(style["metrics_above_zero"]), style["n_metrics"]
    names = ", ".join(METRIC_LABELS[m] for m in style["metrics_above_zero"])
    style_text = (f"its paired 95% CI of fine-tuned minus base lies above zero on {k} of {n} Track A metrics"
                  + (f" ({names})" if names else ""))
    ci = medicine["ci95"]
    ci_text = "n/a" if ci is None else f"[{ci[0] * 100:+.1f}, {ci[1] * 100:+.1f}]"
    med_text = (f"the right condition was named first in {medicine['base']:.1%} of the base model's answers and "
                f"{medicine['finetuned']:.1%} of the fine-tuned model's ({medicine['rise'] * 100:+.1f} points, "
                f"paired 95% CI {ci_text})")
    rule = (f"learning the style takes {STYLE_MIN_METRICS} of {n} metrics; learning the medicine a rise of at least "
            f"{MEDICINE_MIN_RISE * 100:.0f} points with a CI above zero")
    lead = {"paradox": "The paper's paradox holds here: the fine-tuned model learned the style but not the medicine",
            "both": "Not the paper's paradox: the fine-tuned model learned the style and the medicine",
            "neither": "Not the paper's paradox: the fine-tuned model learned neither the style nor the medicine",
            "medicine only": "Not the paper's paradox: the fine-tuned model learned the medicine but not the style",
            }[verdict]
    if not medicine["learned"] and medicine["rise"] >= MEDICINE_MIN_RISE:  # large enough, but its CI reaches zero
        lead = lead.replace("not the medicine", "not measurably the medicine").replace(
            "nor the medicine", "nor measurably the medicine")
    joint = "while" if verdict in ("paradox", "medicine only") else "and"
    return f"{lead}: {style_text}, {joint} {med_text} ({rule})."
