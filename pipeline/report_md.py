"""Render the reproduction report (`report.json`'s dict) as Markdown, in the paper's table layouts."""
from __future__ import annotations

from evalkit.score import METRIC_LABELS, METRICS
from evalkit.table3 import render_table3
from judge.human.export import render_markdown as render_track_c
from judge.rubric import DIMENSIONS
from judge.rubric import TITLES as DIM_LABELS
NAMES = {"base": "Base model (baseline)", "finetuned": "Fine-tuned model"}


def row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def sep(n: int) -> str:
    return "|---|" + "---:|" * (n - 1)


def f4(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def pv(v) -> str:
    return "n/a" if v is None else ("<0.0001" if v < 0.0001 else f"{v:.4f}")


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return (text or "").replace("|", "\\|").replace("\r", "").replace("\n", "<br>") or "*(empty)*"


def render(d: dict) -> str:
    out = [f"# {d['title']}", "", f"Run folder `{d['run_dir']}`, written {d['generated_at']}."]
    if d["preset"] == "demo":
        out += ["", "**This is the CPU demo**: a tiny Llama that the demo builds and fine-tunes on its own "
                "synthetic GenMedGPT-style data. It checks that the whole pipeline works and is measured "
                "honestly; its numbers are not the paper's results and say nothing about Llama-2."]
    if d["track_b"]["standin"]:
        out += ["", "**Track B used the loopback stand-in judge** (`judge.standin`): its scores are "
                "synthetic. They exercise the judge client, Table 2 and the agreement analysis end to end, "
                "but they are not a judgment of the responses."]
    out += _summary(d) + _generation(d) + _table1(d) + _table2(d) + _agreement(d.get("agreement")) + _table3(d)
    out += _track_c(d)
    out += _figures(d) + _manifest(d)
    return "\n".join(out) + "\n"


def _summary(d: dict) -> list[str]:
    """The report's findings in a few sentences (the grounded verdict first: it decides between the tracks)."""
    g = (d.get("grounding") or {}).get("agreement")
    out = ["", "## Summary", ""]
    if d.get("style_vs_medicine"):
        out.append(f"- **Style or medicine?** {d['style_vs_medicine']['sentence']}")
    if g:
        out.append(f"- **Which track follows the clinical content?** {g['summary']}")
    else:
        out.append("- Grounding did not run, so the tracks cannot be checked against the disease database "
                   "(pass --db PATH; see docs/grounding.md).")
    t1, t2 = d.get("table1"), d.get("table2")
    if t1:
        cm = t1["comparisons"][0]["metrics"]
        better = [METRIC_LABELS[m] for m in METRICS if cm[m]["difference"] > 0]
        out.append(f"- Track A (N = {t1['n']}): the fine-tuned model scores higher on {len(better)} of 5 metrics"
                   f"{' (' + ', '.join(better) + ')' if better else ''}.")
    if t2:
        base, ft = t2["baseline"], [m for m in t2["models"] if m != t2["baseline"]][0]
        better = [DIM_LABELS[x] for x in t2["dimensions"] if (t2["mean"][ft][x] or 0) > (t2["mean"][base][x] or 0)]
        out.append(f"- Track B: the fine-tuned model is rated higher on {len(better)} of {len(t2['dimensions'])} "
                   "dimensions" + (" (stand-in judge: synthetic scores)" if d["track_b"]["standin"] else "") + ".")
    return out


def _track_c(d: dict) -> list[str]:
    out = ["", "## Track C: blinded rating by clinicians (beyond the paper)", ""]
    c = d.get("track_c") or {}
    if not c.get("summary") or c["summary"]["n_ratings"] == 0:
        where = f" (store `{c['store']}`)" if c.get("store") else " (no --human-store given)"
        return out + [f"{c.get('hint') or 'Track C has no ratings yet.'}{where}"]
    s = c["summary"]
    out.append(f"Ratings store `{c['store']}`: {s['n_ratings']} final ratings ({s['n_revisions']} with revisions) "
               f"by {len(s['raters'])} raters.")
    out.append("")
    for line in render_track_c(s).splitlines():
        out.append(("##" + line) if line.startswith("# ") else ("#" + line) if line.startswith("## ") else line)
    return out


def _table3(d: dict) -> list[str]:
    out = ["", "## Table 3: clinical grounding against the disease database (beyond the paper)", ""]
    t = d.get("table3")
    if not t:
        reason = (d.get("grounding") or {}).get("reason") or "not run"
        return out + [f"Grounding skipped: {reason}. Enable it with --db PATH (a disease database CSV)."]
    body = render_table3(t, NAMES).splitlines()
    out += ["#" + line if line.startswith("## ") else line for line in body if not line.startswith("# ")]
    g = (d.get("grounding") or {}).get("agreement")
    if g and g["tracks"]:
        out += ["", "### Which track follows the grounded scores?", "", g["summary"], "",
                "On items where exactly one model named the reference diagnosis, how often each score prefers "
                "that model (agree / decisive; ties apart), and Spearman's rho of its paired differences with "
                "diagnosis_correct's:", "", row(["Track", "score", "prefers the right model", "ties",
                                                 "rho with diagnosis_correct (paired)"]), sep(5)]
        for label, t3 in g["tracks"].items():
            for name, r in t3["right_diagnosis"].items():
                rho = t3["correlations"][name]["diagnosis_correct"]["paired_difference"]
                rate = "n/a" if r["rate"] is None else f"{r['agree']}/{r['agree'] + r['disagree']} ({r['rate']:.0%})"
                out.append(row([label, METRIC_LABELS.get(name, DIM_LABELS.get(name, name)), rate, r["tie"],
                                "n/a" if rho["stat"] is None else f"{rho['stat']:+.3f} ({pv(rho['p'])})"]))
        out += ["", "Every correlation of every score with every grounding field (pooled and paired) is in "
                "report.json under `grounding.agreement`."]
    return out


def _generation(d: dict) -> list[str]:
    g, t, h = d["generation"], d["training"], d["held_out"]
    dec = g.get("decoding") or {}
    out = ["", "## Held-out pairs, training and generation", "",
           f"- Held-out pairs: {h['n']} (split seed {h['seed']}); generated for both models: {g.get('n_items')}.",
           f"- Training (`{t['run']}`): {t.get('steps')} optimiser steps, last train loss "
           f"{_num(t.get('last_train_loss'))}; validation loss {_num(t.get('first_val_loss'))} before training "
           f"-> best {_num(t.get('best_val_loss'))} at step {t.get('best_step')}, whose adapter is the "
           "fine-tuned model (loss curve under Figures).",
           f"- Decoding, identical for both models: max_new_tokens {dec.get('max_new_tokens')}, temperature "
           f"{dec.get('temperature')}, top_p {dec.get('top_p')}, top_k {dec.get('top_k')}, seed {dec.get('seed')}, "
           f"{dec.get('dtype')} on {dec.get('device')}, template `{dec.get('template')}`, left-padded batches "
           f"of {dec.get('batch_size')} with a KV cache.", "",
           row(["Model", "responses", "stopped at EOS", "hit max_new_tokens (truncated)", "empty",
                "mean new tokens"]), sep(6)]
    for name, m in g["models"].items():
        out.append(row([NAMES.get(name, name), m["n"], m["stop"], m["length"], m["empty"], _num(m["mean_new_tokens"], 1)]))
    return out


def _num(v, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _table1(d: dict) -> list[str]:
    t, ex = d.get("table1"), d.get("exclusions") or {}
    out = ["", "## Table 1: automatic similarity metrics (Track A)", ""]
    if not t:
        return out + ["Track A has not run."]
    comp = t["comparisons"][0]
    cm = comp["metrics"]
    means = {s["model"]: s["means"] for s in t["systems"]}
    out += [row(["Model", *[METRIC_LABELS[m] for m in METRICS]]), sep(6)]
    for name in (comp["baseline"], comp["model"]):
        out.append(row([NAMES.get(name, name), *[f4(means[name][m]) for m in METRICS]]))
    imp = [("n/a" if cm[m]["improvement_pct"] is None else f"{cm[m]['improvement_pct']:.2f}%") for m in METRICS]
    out += [row(["Difference", *[f"{cm[m]['difference']:+.4f}" for m in METRICS]]),
            row(["Improvement (%)", *imp]),
            row(["p-value (Mann-Whitney U, the paper's test)", *[pv(cm[m]["mann_whitney"]["p"]) for m in METRICS]]),
            row(["p-value (Wilcoxon signed-rank, paired)", *[pv(cm[m]["wilcoxon"]["p"]) for m in METRICS]]),
            row(["p-value (paired approximate randomisation)", *[pv(cm[m]["approx_randomization"]["p"]) for m in METRICS]]),
            row(["95% CI of the difference (paired bootstrap)",
                 *[f"[{cm[m]['bootstrap_ci95'][0]:+.4f}, {cm[m]['bootstrap_ci95'][1]:+.4f}]" for m in METRICS]]),
            row(["Effect size (matched-pairs rank-biserial r)",
                 *[f"{cm[m]['matched_pairs_rank_biserial']:+.3f}" for m in METRICS]]), ""]
    counts = ", ".join(f"{v} {k}" for k, v in (ex.get("counts") or {}).items() if v) or "none"
    out.append(f"**N = {t['n']}** pairs scored, out of {ex.get('n_ids', '?')} held-out ids; "
               f"{ex.get('n_excluded', 0)} ids excluded for both models (exclusions by (id, model): {counts}). "
               "The paper kept 84 of 120 without listing which; here every exclusion is listed:")
    out.append("")
    if ex.get("exclusions"):
        out += [row(["id", "model", "reason"]), "|---|---|---|"]
        out += [row([f"`{e['id']}`", e["model"], e["reason"]]) for e in ex["exclusions"]]
    else:
        out.append("No exclusion: every held-out pair is scored for both models.")
    if ex.get("kept_truncated"):
        out += ["", f"Scored although truncated (`--keep-truncated`): {len(ex['kept_truncated'])} responses."]
    p = d["paper"]["table1"]
    out += ["", f"For reference, the paper's Table 1 (N = {p['n']}, Mann-Whitney U): baseline "
            + ", ".join(f"{METRIC_LABELS[m]} {p['base'][m]}" for m in METRICS) + "; fine-tuned "
            + ", ".join(f"{METRIC_LABELS[m]} {p['finetuned'][m]}" for m in METRICS) + "."]
    return out


def _table2(d: dict) -> list[str]:
    t = d.get("table2")
    out = ["", "## Table 2: LLM-as-a-judge (Track B)", ""]
    if not t:
        reason = d["track_b"].get("reason") or "not run"
        return out + [f"Track B skipped: {reason}. Enable it with `--judge-base-url URL` (any OpenAI-compatible "
                      "server, e.g. vLLM, llama.cpp or Ollama) or `OPENAI_BASE_URL`; `--judge-standin` checks the "
                      "plumbing offline against the loopback stand-in."]
    base, ft = t["baseline"], [m for m in t["models"] if m != t["baseline"]][0]
    out += [f"Judge: `{t.get('judge_model')}`, blind, 1-5 per dimension"
            + (f", {t['repeats']} repeats averaged" if t.get("repeats", 1) > 1 else "") + ".", "",
            row(["Evaluation Dimension", NAMES.get(base, base), NAMES.get(ft, ft),
                 "p-value (Mann-Whitney U, as the paper)", "p-value (Wilcoxon signed-rank, paired)"]), sep(5)]
    for dim in t["dimensions"]:
        p = t["p_values"][ft][dim]
        out.append(row([DIM_LABELS[dim], _num(t["mean"][base][dim], 2), _num(t["mean"][ft][dim], 2),
                        pv(p["mann_whitney"]), pv(p["wilcoxon"])]))
    out += ["", f"**N** = {t['n'][base]} (baseline) and {t['n'][ft]} (fine-tuned) items with a valid judgment, "
            f"{t['p_values'][ft]['n_pairs']} paired; parse failures {t['parse_failures'][base]} / "
            f"{t['parse_failures'][ft]}, request errors {t['errors'][base]} / {t['errors'][ft]} "
            "(never imputed: such items are left out)."]
    p = d["paper"]["table2"]
    out += ["", f"For reference, the paper's Table 2 (GPT-4, N = {p['n']}): baseline "
            + ", ".join(f"{DIM_LABELS[x]} {p['base'][x]:.2f}" for x in DIMENSIONS) + "; fine-tuned "
            + ", ".join(f"{DIM_LABELS[x]} {p['finetuned'][x]:.2f}" for x in DIMENSIONS) + "."]
    return out


def _corr_table(table: dict, title: str) -> list[str]:
    out = ["", f"**{title}**", "", row(["Spearman rho (p)", *[DIM_LABELS[x] for x in DIMENSIONS]]), sep(5)]
    for m in METRICS:
        cells = []
        for x in DIMENSIONS:
            s = table[m][x]["spearman"]
            cells.append("n/a (constant scores)" if s["stat"] is None else f"{s['stat']:+.3f} ({pv(s['p'])})")
        out.append(row([METRIC_LABELS[m], *cells]))
    return out


def _agreement(a: dict | None) -> list[str]:
    out = ["", "## Do the two tracks agree? (per item)", ""]
    if a is None:
        return out + ["Needs Track B; skipped."]
    c = a["correlations"]
    out += [f"Items with metric scores and judge scores for both models: **{a['n_items']}** "
            f"({len(a['excluded_ids'])} scored by Track A left out for lack of a valid judgment). "
            "Kendall's tau-b for every cell is in report.json.",
            *_corr_table(c["paired_difference"], "Paired differences (fine-tuned minus base, per item): "
                         "when a metric says an answer improved, does the judge?"),
            *_corr_table(c["pooled"], "Pooled over both models' responses"),
            *[line for model, t in c["per_model"].items() for line in _corr_table(t, f"{NAMES.get(model, model)} only")],
            "", "**Same preferred model?** On each item each track prefers the model with the higher score; "
            "`agree / decisive` counts items where both tracks pick a model, ties are counted apart "
            "(metric tie / judge tie / both tie).", "",
            row(["Metric", *[DIM_LABELS[x] for x in DIMENSIONS]]), sep(5)]
    for m in METRICS:
        cells = []
        for x in DIMENSIONS:
            p = a["preference_agreement"][m][x]
            rate = "n/a" if p["agreement_rate"] is None else f"{p['agreement_rate'] * 100:.0f}%"
            cells.append(f"{p['agree']}/{p['agree'] + p['disagree']} ({rate}); ties {p['metric_tie']}/{p['judge_tie']}/{p['both_tie']}")
        out.append(row([METRIC_LABELS[m], *cells]))
    n = a["n_conflicting_items"]
    out += ["", f"### Where they disagree most ({n} item{'s' if n != 1 else ''} where the tracks prefer different models)", "",
            "Each track's preference for the fine-tuned model is the mean of its standardised paired "
            "differences (metrics scaled by their root-mean-square difference, judge dimensions likewise); "
            "the items shown have the most negative product of the two."]
    if not a["examples"]:
        out += ["", "No item where the two tracks prefer different models."]
    for k, ex in enumerate(a["examples"], 1):
        b, f = ex["models"][a["base"]], ex["models"][a["finetuned"]]
        out += ["", f"#### Example {k}: item `{ex['id']}` (Track A preference {ex['track_a']:+.2f}, "
                f"Track B preference {ex['track_b']:+.2f})", "", f"**Patient:** {cell(ex['prompt'])}", "",
                f"**Reference:** {cell(ex['reference'])}", "",
                row(["", NAMES["base"], NAMES["finetuned"]]), "|---|---|---|",
                row(["Response", cell(b["response"]), cell(f["response"])]),
                row(["Finish", b["finish_reason"], f["finish_reason"]])]
        out += [row([METRIC_LABELS[m], f4(b["metrics"][m]), f4(f["metrics"][m])]) for m in METRICS]
        out += [row([f"Judge: {DIM_LABELS[x]}", _num(b["judge"][x], 1), _num(f["judge"][x], 1)]) for x in DIMENSIONS]
    return out


def _figures(d: dict) -> list[str]:
    out = ["", "## Figures", ""]
    out += [f"![{f['caption']}]({f['path']})\n\n*{f['caption']}*\n" for f in d["figures"]]
    out += [f"- {n}" for n in d["figure_notes"]]
    return out


def _manifest(d: dict) -> list[str]:
    m = d["manifest"]
    runs = m.get("commands") or []
    earlier = f" (after {len(runs) - 1} earlier invocation(s) on this run folder)" if len(runs) > 1 else ""
    out = ["", "## Manifest", "", f"Command: `{m.get('command')}`{earlier}", "",
           row(["Stage", "status", "wall time (s)"]), "|---|---|---:|"]
    for name, s in m["stages"].items():
        out.append(row([name, s.get("status"), "n/a" if s.get("wall_s") is None else f"{s['wall_s']:.1f}"]))
    out += [row(["total", "", f"{m['total_wall_s']:.1f}"]), "",
            "Seeds: " + ", ".join(f"{k} {v}" for k, v in m["seeds"].items()), "",
            "Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v), "",
            f"Hardware: {m['hardware']['platform']}, {m['hardware']['cpu_count']} CPUs, "
            f"{m['hardware']['memory_gb']} GB RAM, accelerators: {', '.join(m['hardware']['cuda']) or 'none'}.", ""]
    c = m["checksums"]
    out += [f"- dataset `{c['dataset']['path']}`: sha256 `{c['dataset']['sha256']}`",
            f"- adapter_model.safetensors: sha256 `{c['adapter_model.safetensors']}`"]
    for name, sha in (c.get("base_model") or {}).items():
        out.append(f"- base model `{name}`: sha256 `{sha}`")
    for name, sha in c["outputs"].items():
        out.append(f"- `{name}`: sha256 `{sha}`")
    out += ["", "The full configuration (this pipeline's and the training run's) is in report.json under `manifest`."]
    return out
