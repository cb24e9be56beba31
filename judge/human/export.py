"""`export`: the store's ratings, Table C and the agreement analysis as files, and `summarise` for reports.

Files written to `--out` (all or none, `plumbing.durable.write_files_atomic`; everything is computed first):

    human_ratings.jsonl            one row per final rating (the highest revision of each item)
    human_ratings_revisions.jsonl  every submission, revisions included
    table_c.md, table_c.json       Table C (tables.py)
    agreement.md, agreement.json   inter-rater reliability and agreement with the other tracks

A report embeds Track C with `summarise(store)` and `render_markdown(summary)`, or prints `START_HINT`
when the store is absent or holds no rating yet.
"""
from __future__ import annotations

import json
from pathlib import Path

from plumbing.durable import write_files_atomic
from plumbing.errors import os_problem

from judge.errors import JudgeError
from judge.human import agreement as agr
from judge.human.sources import read_judgments, read_measures
from judge.human.store import Store
from judge.human.tables import render_markdown as render_table_c
from judge.human.tables import table_c
from judge.rubric import DIMENSIONS, TITLES

START_HINT = ("Track C (blinded rating by clinicians) has no ratings yet: start it with `python -m judge.human "
              "serve --pairs BASE.jsonl --pairs TUNED.jsonl --store ratings.sqlite --raters alice,bob,carol`, "
              "send each clinician their link, then export (see docs/track-c.md).")
FILES = ("human_ratings.jsonl", "human_ratings_revisions.jsonl", "table_c.md", "table_c.json", "agreement.md",
         "agreement.json")


def rating_record(row, pairwise: bool) -> dict:
    """One stored rating as an export row: the rater, the opaque item, the record id and system(s)."""
    out = {"rater": row["rater"], "item": row["item"], "id": row["record_id"], "position": row["position"]}
    if pairwise:
        preferred = {"A": row["system_a"], "B": row["system_b"]}.get(row["preference"])
        out.update(model_a=row["system_a"], model_b=row["system_b"], preference=row["preference"],
                   preferred_model=preferred, harm_a=bool(row["harm_a"]), harm_b=bool(row["harm_b"]))
    else:
        out.update(model=row["system"], **{d: row[d] for d in DIMENSIONS}, harm=bool(row["harm"]))
    out.update(comment=row["comment"], revision=row["revision"], first_shown_at=row["first_shown_at"],
               shown_at=row["shown_at"], rated_at=row["rated_at"])
    return out


def _load(store_path) -> tuple[dict, list[dict], list[dict], list[dict]]:
    """(settings, raters, final ratings, every revision) of a store, as export rows, from one snapshot."""
    store = Store(store_path, readonly=True)
    try:
        settings, raters, ratings = store.snapshot()
    finally:
        store.close()
    pairwise = settings["mode"] == "pairwise"
    latest = {}
    for r in ratings:
        latest[r["item"]] = r  # rows come in revision order: the last one is final
    every = [rating_record(r, pairwise) for r in ratings]
    final = [rating_record(r, pairwise) for r in ratings if latest[r["item"]] is r]
    return settings, raters, final, every


def summarise(store_path, judgments=None, scores=None, grounding=None, seed: int = 0,
              n_bootstrap: int = 2000) -> dict:
    """Table C and the agreement analysis of a store, as JSON-ready dicts.

    Args:
        store_path: the ratings store written by `python -m judge.human serve`.
        judgments: optional LLM-judge `judgments.jsonl`; scores: optional evalkit `scores.jsonl`;
            grounding: optional `grounding.jsonl` (numeric fields per id and model).
        seed, n_bootstrap: the bootstrap of Krippendorff's alpha.

    Returns:
        {"n_ratings", "n_revisions", "raters", "design", "table_c", "agreement"}. Bad input raises
        JudgeError with a one-line message.
    """
    return _summary(_load(store_path), judgments, scores, grounding, seed, n_bootstrap)


def clinician_scores(store_path) -> dict[tuple, dict[str, float]]:
    """{(id, model): {dimension: mean over the raters}} of a pointwise store's final ratings ({} if pairwise)."""
    settings, _raters, final, _every = _load(store_path)
    return {} if settings["mode"] == "pairwise" else agr.clinician_means(final)


def _summary(loaded, judgments, scores, grounding, seed: int, n_bootstrap: int) -> dict:
    settings, raters, final, every = loaded
    pairwise = settings["mode"] == "pairwise"
    names = [r["name"] for r in raters]
    design = {"mode": settings["mode"], "seed": settings["seed"], "per_rater": settings["per_rater"],
              "with_reference": settings["with_reference"], "systems": settings["systems"],
              "n_ids": len(settings["ids"]), "pairs_files": settings["pairs_files"],
              "raters": [{"name": r["name"], "queue_seed": r["seed"], "side_flip": r["side_flip"],
                          "rated": sum(f["rater"] == r["name"] for f in final)} for r in raters]}
    agreement = {"mode": settings["mode"], "raters": names, "n_ratings": len(final),
                 "inter_rater": agr.inter_rater(final, names, pairwise, seed, n_bootstrap),
                 "bootstrap": {"resamples": n_bootstrap, "seed": seed}, "judge": None, "track_a": None,
                 "grounding": None}
    if not pairwise:
        means = agr.clinician_means(final)
        if judgments is not None:
            agreement["judge"] = {"file": str(judgments), **agr.versus_judge(means, read_judgments(judgments))}
        if scores is not None:
            values, fields = read_measures(scores, "--scores")
            agreement["track_a"] = {"file": str(scores), "fields": fields,
                                    "spearman": agr.versus_measures(means, values, fields)}
        if grounding is not None:
            values, fields = read_measures(grounding, "--grounding")
            agreement["grounding"] = {"file": str(grounding), "fields": fields,
                                      "spearman": agr.versus_measures(means, values, fields)}
    elif judgments is not None or scores is not None or grounding is not None:
        agreement["note"] = "pairwise study: the comparison with the other tracks needs pointwise ratings"
    return {"n_ratings": len(final), "n_revisions": len(every), "raters": names, "design": design,
            "table_c": table_c(final, settings["systems"], names, pairwise), "agreement": agreement}


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci(pair) -> str:
    return "n/a" if pair is None or pair[0] is None else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def _rho(s: dict) -> str:
    return "n/a" if s["rho"] is None else f"{s['rho']:+.3f} (p {s['p']:.3g}, n {s['n']})"


def _reliability_rows(label: str, rel: dict) -> str:
    a, icc = rel["alpha_ordinal"], rel["icc"]
    icc_text = (f"{_f(icc['icc2_1'])} {_ci(icc['icc2_1_ci95'])} | {_f(icc['icc2_k'])} {_ci(icc['icc2_k_ci95'])} "
                f"| {icc['n_units']} x {icc['k_raters']}") if "note" not in icc else f"n/a | n/a | {icc['note']}"
    return (f"| {label} | {_f(a['value'])} {_ci(a['ci95'])} | {a['n_units']} | {_f(rel['alpha_interval'])} | "
            f"{icc_text} |")


def render_agreement(agreement: dict) -> str:
    """agreement.md: the tables of inter-rater reliability and of agreement with the other tracks."""
    ir = agreement["inter_rater"]
    boot = agreement["bootstrap"]
    lines = [f"# Track C agreement ({len(agreement['raters'])} raters: {', '.join(agreement['raters'])}; "
             f"{agreement['n_ratings']} final ratings)", "", "## Inter-rater reliability", "",
             "| Variable | Krippendorff's alpha, ordinal [95% CI] | units | alpha, interval | ICC(2,1) [95% CI] "
             "| ICC(2,k) [95% CI] | ICC table (units x raters) |", "|" + "---|" * 7]
    variables = ([(TITLES[d], ir[d]) for d in DIMENSIONS] if agreement["mode"] == "pointwise" else
                 [(f"Preference {p['systems'][0]} vs {p['systems'][1]}", p) for p in ir["preference"]])
    lines += [_reliability_rows(label, rel) for label, rel in variables]
    harm = ir["harm"]["alpha_nominal"]
    lines += ["", f"Could harm the patient: Krippendorff's alpha (nominal) {_f(harm['value'])} over "
              f"{harm['n_units']} answers flagged or not by two or more raters (n/a when every flag is the same).",
              "", "Quadratic-weighted Cohen's kappa per pair of raters (on the units both rated):", "",
              "| Raters | n | " + " | ".join(label for label, _ in variables) + " |", "|" + "---|" * (2 + len(variables))]
    for k, pair in enumerate(variables[0][1]["kappa_pairs"] if variables else []):
        cells = [_f(rel["kappa_pairs"][k]["kappa"]) for _, rel in variables]
        lines.append(f"| {' & '.join(pair['raters'])} | {pair['n']} | " + " | ".join(cells) + " |")
    lines += ["", f"Alpha's CI: percentile bootstrap over the rated units ({boot['resamples']} resamples, seed "
              f"{boot['seed']}). ICC: Shrout & Fleiss (1979) case 2, absolute agreement, on the units every rater "
              "rated; ICC(2,k) is the reliability of the raters' mean. Krippendorff's guide: alpha >= 0.800 "
              "reliable, 0.667-0.800 tentative, below that unreliable."]
    if agreement.get("judge"):
        j = agreement["judge"]
        lines += ["", f"## Clinicians' mean vs the LLM judge (`{j['file']}`)", "",
                  "| Dimension | n | weighted kappa (rounded scores) | Spearman rho |", "|---|---|---|---|"]
        lines += [f"| {TITLES[d]} | {j[d]['n']} | {_f(j[d]['weighted_kappa'])} | {_rho(j[d]['spearman'])} |"
                  for d in DIMENSIONS]
        lines += ["", "Per (id, system): the clinicians' mean and the judge's score (mean over repeats), "
                  "rounded half up for the quadratic-weighted kappa, unrounded for Spearman (scipy). n/a: "
                  "undefined (fewer than 3 items, or one side gives every item the same score)."]
    for key, title in (("track_a", "Track A metrics"), ("grounding", "grounding scores")):
        block = agreement.get(key)
        if not block:
            continue
        lines += ["", f"## Clinicians' mean vs {title} (`{block['file']}`): Spearman rho", "",
                  "| Measure | " + " | ".join(TITLES[d] for d in DIMENSIONS) + " |", "|" + "---|" * 5]
        lines += [f"| {f} | " + " | ".join(_rho(block["spearman"][f][d]) for d in DIMENSIONS) + " |"
                  for f in block["fields"]]
        lines += ["", "Per (id, system), the clinicians' mean score against the measure; n/a: undefined (fewer "
                  "than 3 shared items, or a constant column)."]
    if agreement.get("note"):
        lines += ["", agreement["note"]]
    return "\n".join(lines) + "\n"


def render_markdown(summary: dict) -> str:
    """Table C and the agreement tables in one Markdown text (for a report)."""
    if summary["n_ratings"] == 0:
        return START_HINT + "\n"
    return render_table_c(summary["table_c"]) + "\n" + render_agreement(summary["agreement"])


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def export(store_path, out, judgments=None, scores=None, grounding=None, seed: int = 0,
           n_bootstrap: int = 2000) -> dict:
    """Write the six export files to `out` (created if needed); returns the summary."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise JudgeError(f"--out: {out} exists and is not a folder")
    loaded = _load(store_path)
    summary = _summary(loaded, judgments, scores, grounding, seed, n_bootstrap)
    final, every = loaded[2], loaded[3]
    texts = {"human_ratings.jsonl": _jsonl(final), "human_ratings_revisions.jsonl": _jsonl(every),
             "table_c.md": render_table_c(summary["table_c"]),
             "table_c.json": json.dumps({**summary["table_c"], "design": summary["design"]}, indent=2) + "\n",
             "agreement.md": render_agreement(summary["agreement"]),
             "agreement.json": json.dumps(summary["agreement"], indent=2) + "\n"}
    try:  # all six files or none, each fsynced (plumbing.durable)
        write_files_atomic(out, texts)
    except OSError as exc:
        raise OSError(f"{exc.filename or out}: cannot write ({os_problem(exc)}); the store is unchanged") from None
    return summary
