"""The last stage of the reproduction: `report.md`, `report.html` and `report.json` from the run's files.

The report only reads what the other stages wrote (nothing is recomputed that a stage already
computed, so the report and the per-stage files cannot disagree), except the agreement analysis
between the tracks (`evalkit/agreement.py`), which no stage owns. `report.json` holds every number
of `report.md`; the Markdown is rendered from that dict alone (`pipeline/report_md.py`).
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from evalkit import agreement
from judge.human.export import START_HINT, clinician_scores, summarise
from judge.standin.answers import SERVED_MODEL
from plumbing.durable import write_json_atomic, write_text_atomic
from plumbing.files import sha256_file

from pipeline.manifest import build_manifest
from pipeline.paradox import style_vs_medicine
from pipeline.report_html import render_html
from pipeline.report_md import render

PAPER_TABLE1 = {  # the paper's Table 1 (N = 84 of 120, Mann-Whitney U p-values)
    "base": {"bleu": 0.0033, "rouge1": 0.1819, "rouge2": 0.0298, "rougeL": 0.1696, "meteor": 0.1004},
    "finetuned": {"bleu": 0.0216, "rouge1": 0.2211, "rouge2": 0.0549, "rougeL": 0.2061, "meteor": 0.1227},
    "p": {"bleu": 0.0040, "rouge1": 0.0070, "rouge2": 0.0162, "rougeL": 0.0100, "meteor": 0.0450}, "n": 84}
PAPER_TABLE2 = {  # the paper's Table 2 (GPT-4, N = 20; the test is not named)
    "base": {"accuracy": 2.80, "comprehensiveness": 3.55, "helpfulness": 3.25, "relevance": 2.75},
    "finetuned": {"accuracy": 2.65, "comprehensiveness": 3.30, "helpfulness": 3.15, "relevance": 2.60},
    "p": {"accuracy": 0.6868, "comprehensiveness": 0.4026, "helpfulness": 0.7605, "relevance": 0.6889}, "n": 20}


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_summary(train_dir: Path) -> dict:
    """Steps, losses and the data report of the training run (`metrics.jsonl`, `DONE`, `data_report.json`)."""
    rows = read_jsonl(train_dir / "metrics.jsonl")
    train = [r for r in rows if r.get("type") == "train"]
    val = [r for r in rows if r.get("type") == "val"]
    try:
        done = read_json(train_dir / "DONE")
    except json.JSONDecodeError:  # an older DONE that is a plain marker
        done = None
    out = {"run": str(train_dir), "steps": train[-1]["step"] if train else None,
           "last_train_loss": train[-1]["loss"] if train else None,
           "first_val_loss": val[0]["loss"] if val else None,
           "best_val_loss": min(r["loss"] for r in val) if val else None,
           "best_step": min(val, key=lambda r: r["loss"])["step"] if val else None,
           "done": done, "data_report": read_json(train_dir / "data_report.json")}
    if out["data_report"]:
        out["data_report"] = {k: v for k, v in out["data_report"].items() if k != "problems"}
    return out


def collect_figures(run: Path, train_dir: Path) -> tuple[list[dict], list[str]]:
    """The loss curve and Track A's figures, each stored once: a figure inside the run folder is shown where
    its stage wrote it; only a loss curve from an outside training run (`--train-run`) is copied in."""
    figures, notes = [], []
    sources = [("loss curve (train and validation)", train_dir / "loss.png")]
    table1 = read_json(run / "track_a" / "table1.json") or {}
    for name in table1.get("figures", []):
        sources.append((f"Track A distribution: {name}", run / "track_a" / name))
    if table1 and not table1.get("figures"):
        notes.append(f"Track A figures: {table1.get('figure_note') or 'none'}")
    for caption, src in sources:
        if not src.is_file():
            notes.append(f"{caption}: {_missing_reason()} ({src} is absent)")
            continue
        try:
            rel = src.resolve().relative_to(run.resolve())
        except ValueError:  # outside the run folder: keep a copy with the report
            (run / "figures").mkdir(exist_ok=True)
            shutil.copyfile(src, run / "figures" / src.name)
            rel = Path("figures") / src.name
        figures.append({"caption": caption, "path": rel.as_posix()})
    return figures, notes


def _missing_reason() -> str:
    try:
        import matplotlib  # noqa: F401  (optional extra, only checked here)
    except ImportError:
        return "figure skipped (matplotlib not installed)"
    return "figure not found"


def generation_summary(run: Path) -> dict:
    """Decoding settings and, per model, how many responses stopped at EOS or hit the length cap."""
    gen = run / "generations"
    meta = read_json(gen / "meta.json") or {}
    per_model = {}
    for name in ("base", "finetuned"):
        recs = read_jsonl(gen / f"{name}.jsonl")
        new = [r.get("meta", {}).get("new_tokens", 0) for r in recs]
        per_model[name] = {"n": len(recs), "stop": sum(r.get("finish_reason") == "stop" for r in recs),
                           "length": sum(r.get("finish_reason") == "length" for r in recs),
                           "empty": sum(not r.get("response", "").strip() for r in recs),
                           "mean_new_tokens": sum(new) / len(new) if new else None}
    return {"decoding": meta.get("decoding"), "n_items": meta.get("n_items"), "models": per_model,
            "base_sha256": meta.get("base_sha256")}


def agreement_analysis(run: Path) -> dict | None:
    """The agreement between the tracks on the items both scored, or None without Track B."""
    judgments = read_jsonl(run / "track_b" / "judgments.jsonl")
    scores = read_jsonl(run / "track_a" / "scores.jsonl")
    if not judgments or not scores:
        return None
    records = {}
    for name in ("base", "finetuned"):
        for r in read_jsonl(run / "generations" / f"{name}.jsonl"):
            records[(str(r["id"]), name)] = r
    return agreement.analyse(scores, judgments, records, base="base", finetuned="finetuned")


def track_c(run: Path, store: str | None) -> dict:
    """Track C from the ratings store named by --human-store: Table C and its agreement with the other
    tracks (`judge.human.export.summarise`), or how to start it."""
    if not store or not Path(store).expanduser().is_file():
        return {"store": store, "summary": None, "hint": START_HINT}
    inputs = {name: run / rel for name, rel in (("judgments", "track_b/judgments.jsonl"),
                                                ("scores", "track_a/scores.jsonl"),
                                                ("grounding", "grounding/grounding.jsonl"))}
    summary = summarise(Path(store).expanduser(), **{k: p for k, p in inputs.items() if p.is_file()})
    return {"store": store, "summary": summary, "hint": START_HINT if summary["n_ratings"] == 0 else None}


def grounding_analysis(run: Path, store: str | None = None) -> dict | None:
    """Which track follows the grounded clinical scores (None without the grounding stage)."""
    rows = read_jsonl(run / "grounding" / "grounding.jsonl")
    if not rows:
        return None
    tracks = {}
    scores = read_jsonl(run / "track_a" / "scores.jsonl")
    if scores:
        tracks["Track A"] = (agreement.metric_scores(scores), agreement.METRICS)
    judgments = read_jsonl(run / "track_b" / "judgments.jsonl")
    if judgments:
        tracks["Track B"] = (agreement.judge_scores(judgments), agreement.DIMENSIONS)
    if store and Path(store).expanduser().is_file():
        means = {(str(i), str(m)): v for (i, m), v in clinician_scores(Path(store).expanduser()).items()}
        if means:
            tracks["Track C"] = (means, agreement.DIMENSIONS)
    return agreement.grounded_agreement(tracks, rows)


def build(run: Path, state: dict) -> dict:
    """Everything the report shows, as one JSON-ready dict."""
    cfg = state.get("config", {})
    train_dir = Path(cfg.get("train_run") or run / "train")
    train_cfg = read_json(train_dir / "config.json") or {}
    resolved = train_cfg.get("resolved", {})
    split = read_json(train_dir / "split.json") or {}
    figures, notes = collect_figures(run, train_dir)
    generation = generation_summary(run)
    table1 = read_json(run / "track_a" / "table1.json")
    table2 = read_json(run / "track_b" / "table2.json")
    table3 = read_json(run / "grounding" / "table3.json")
    track_b_status = state.get("stages", {}).get("track_b", {})
    decoding = generation.get("decoding") or {}
    checksums = {
        "dataset": {"path": decoding.get("dataset") or resolved.get("data_path"),
                    "sha256": decoding.get("dataset_sha256") or resolved.get("data_sha256")},
        "adapter_model.safetensors": decoding.get("adapter_sha256"),
        "base_model": generation.get("base_sha256"),
        "outputs": {str(p.relative_to(run)): sha256_file(p) for p in
                    [run / "generations" / "base.jsonl", run / "generations" / "finetuned.jsonl",
                     run / "track_a" / "scores.jsonl", run / "grounding" / "grounding.jsonl",
                     run / "track_b" / "judgments.jsonl"] if p.is_file()},
    }
    seeds = {"train": train_cfg.get("seed"), "split": split.get("seed"), "generation": decoding.get("seed"),
             "track_a_resampling": (table1 or {}).get("settings", {}).get("seed"),
             "judge": cfg.get("judge", {}).get("config", {}).get("seed", 0)}
    return {
        "title": f"Reproduction report: {cfg.get('preset', '?')} preset",
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "preset": cfg.get("preset"), "run_dir": str(run),
        "held_out": {"n": len(split.get("val_ids", [])), "seed": split.get("seed"),
                     "val_size": split.get("val_size")},
        "training": training_summary(train_dir),
        "generation": generation,
        "table1": table1, "exclusions": read_json(run / "track_a" / "exclusions.json"),
        "table2": table2, "track_b": {"status": "done" if table2 else track_b_status.get("status", "skipped"),
                                      "reason": track_b_status.get("reason"),
                                      "standin": judged_by_standin(run) if table2 else False},
        "agreement": agreement_analysis(run) if table2 else None,
        "table3": table3,
        "style_vs_medicine": style_vs_medicine(table1, table3),
        "grounding": {"status": state.get("stages", {}).get("grounding", {}).get("status"),
                      "reason": state.get("stages", {}).get("grounding", {}).get("reason"),
                      "agreement": grounding_analysis(run, cfg.get("human_store"))},
        "track_c": track_c(run, cfg.get("human_store")),
        "paper": {"table1": PAPER_TABLE1, "table2": PAPER_TABLE2},
        "figures": figures, "figure_notes": notes,
        "manifest": build_manifest(cfg, train_cfg, state.get("stages", {}), checksums, seeds,
                                   state.get("commands")),
    }


def judged_by_standin(run: Path) -> bool:
    """Whether Track B's judgments (the ones reported) came from the loopback stand-in: its records name
    it as `served_model`. Read from the files, not the current config, which a later run may change."""
    path = run / "track_b" / "judgments.jsonl"
    if not path.is_file():
        return False
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line says nothing about who judged
        if isinstance(record, dict) and record.get("served_model") == SERVED_MODEL:
            return True
    return False


def write_report(run: Path, state: dict) -> Path:
    """Write `report.json` and `report.md` into the run folder; return the Markdown's path."""
    data = build(Path(run), state)
    write_json_atomic(Path(run) / "report.json", data)
    write_text_atomic(Path(run) / "report.html", render_html(data, Path(run)))
    path = Path(run) / "report.md"
    write_text_atomic(path, render(data))
    return path
