"""End to end: the demo pipeline at a small size, killed during generation and resumed, with Track B
against the loopback stand-in; then every stage's outputs are checked against each other and the
report's tables are recomputed from the per-item files. Also: the paper preset without the gated
weights fails with one line, and Track B without an endpoint is skipped with one line."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from medlora_scripts import reproduce

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # end-to-end runs of the whole pipeline, in processes
METRICS = ("bleu", "rouge1", "rouge2", "rougeL", "meteor")
DIMENSIONS = ("accuracy", "comprehensiveness", "helpfulness", "relevance")
SMALL = {  # the demo preset, shrunk to seconds: tiny warm-up, 6 steps, 12 held-out pairs
    "preset": "demo",
    "train_args": ["--demo-records", "120", "--demo-pretrain-steps", "15", "--max-steps", "6", "--val-size", "12",
                   "--eval-steps", "3", "--save-steps", "3", "--num-threads", "1"],
    "generation": {"max_new_tokens": 24, "batch_size": 4},
    "evalkit_args": ["--keep-truncated", "--bootstrap", "500", "--permutations", "500"],
}


def env(**extra) -> dict:
    e = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    e.update(OMP_NUM_THREADS="1", **extra)
    return e


def reproduce_cli(args: list[str], timeout: float = 300, kill_after: str | None = None,
                  **extra_env) -> subprocess.CompletedProcess:
    """scripts/reproduce.py in a process; `kill_after` ("MODULE:FUNC[:TEXT[:N]]", tests/_faulty.py) SIGKILLs it
    right after that call."""
    command = ([sys.executable, str(REPO / "scripts" / "reproduce.py")] if kill_after is None else
               [sys.executable, str(REPO / "tests" / "_faulty.py"), kill_after, "medlora_scripts.reproduce"])
    return subprocess.run([*command, *args], cwd=REPO, env=env(**extra_env), capture_output=True, text=True,
                          timeout=timeout)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """Run the small demo with Track B, SIGKILL it after the first generation batch, then rerun it."""
    tmp = tmp_path_factory.mktemp("reproduce")
    cfg = tmp / "small.json"
    cfg.write_text(json.dumps(SMALL))
    run = tmp / "run"
    args = ["--config", str(cfg), "--run-dir", str(run), "--judge-standin"]
    first = reproduce_cli(args, kill_after="pipeline.generation:write_text_atomic:batch_")  # after one batch
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    killed = {"done_mtime": (run / "train" / "DONE").stat().st_mtime_ns,
              "adapter_mtime": (run / "train" / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns,
              "base_parts": sorted(p.name for p in (run / "generations" / "parts" / "base-b4").iterdir()),
              "base_exists": (run / "generations" / "base.jsonl").exists(),
              "finetuned_exists": (run / "generations" / "finetuned.jsonl").exists(),
              "generate_marker": (run / "generations" / "stage.done").exists()}
    # a crash in the middle of writing the next batch leaves only a hidden temporary file
    (run / "generations" / "parts" / "base-b4" / ".batch_000001.jsonl.tmp").write_text('{"id": "999", "torn')
    second = reproduce_cli(args)
    assert second.returncode == 0, second.stderr[-2000:]
    return {"run": run, "killed": killed, "second": second, "cfg": cfg}


def test_resume_after_kill_redoes_no_training_and_loses_or_doubles_no_item(resumed):
    run, killed = resumed["run"], resumed["killed"]
    assert killed["base_parts"] == ["batch_000000.jsonl"]  # one batch written, then killed
    assert not killed["base_exists"] and not killed["finetuned_exists"] and not killed["generate_marker"]
    assert not (run / "generations" / "parts").exists()  # merged, then removed
    assert (run / "train" / "DONE").stat().st_mtime_ns == killed["done_mtime"]
    assert (run / "train" / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == killed["adapter_mtime"]
    assert "[train] complete" in resumed["second"].stdout
    val_ids = json.loads((run / "train" / "split.json").read_text())["val_ids"]
    for name in ("base", "finetuned"):
        ids = [r["id"] for r in jsonl(run / "generations" / f"{name}.jsonl")]
        assert len(ids) == len(set(ids)) and sorted(ids) == sorted(val_ids)
        assert all(r["model"] == name and r["finish_reason"] in ("stop", "length")
                   for r in jsonl(run / "generations" / f"{name}.jsonl"))


def test_every_stage_output_exists_and_agrees(resumed):
    run = resumed["run"]
    for rel in ("train/DONE", "train/split.json", "train/config.json", "train/adapter/adapter_model.safetensors",
                "generations/meta.json", "generations/stage.done", "track_a/scores.jsonl", "track_a/table1.json",
                "track_a/exclusions.json", "track_a/stage.done", "track_b/judgments.jsonl", "track_b/table2.json",
                "track_b/stage.done", "grounding/grounding.jsonl", "grounding/table3.json", "grounding/stage.done",
                "report.md", "report.json", "pipeline.json"):
        assert (run / rel).is_file(), rel
    val_ids = sorted(json.loads((run / "train" / "split.json").read_text())["val_ids"])
    meta = json.loads((run / "generations" / "meta.json").read_text())
    assert sorted(meta["ids"]) == val_ids and meta["n_items"] == len(val_ids)
    base, ft = jsonl(run / "generations" / "base.jsonl"), jsonl(run / "generations" / "finetuned.jsonl")
    by_id = {r["id"]: r for r in base}
    assert all(r["prompt"] == by_id[r["id"]]["prompt"] and r["reference"] == by_id[r["id"]]["reference"] for r in ft)
    ex = json.loads((run / "track_a" / "exclusions.json").read_text())
    scores = jsonl(run / "track_a" / "scores.jsonl")
    kept = sorted(set(val_ids) - set(ex["excluded_ids"]))
    for model in ("base", "finetuned"):
        assert sorted(r["id"] for r in scores if r["model"] == model) == kept
    report = json.loads((run / "report.json").read_text())
    assert report["table1"]["n"] == len(kept) == ex["n_ids"] - ex["n_excluded"]
    assert ex["n_ids"] == len(val_ids) == report["held_out"]["n"] == report["generation"]["n_items"]
    judged = jsonl(run / "track_b" / "judgments.jsonl")
    assert sorted({r["id"] for r in judged}) == val_ids
    assert report["table2"]["n"] == {"base": len(val_ids), "finetuned": len(val_ids)}
    assert report["agreement"]["n_items"] == len(kept)
    md = (run / "report.md").read_text()
    assert f"**N = {len(kept)}**" in md and "## Table 2" in md and "stand-in" in md
    try:
        import matplotlib  # noqa: F401  (optional: without it the report says the figure was skipped)
        # each figure stored once, where its stage wrote it, and inlined into report.html
        assert "](train/loss.png)" in md and "](track_a/dist_bleu.png)" in md and not (run / "figures").exists()
        page = (run / "report.html").read_text()
        assert page.count('src="data:image/png;base64,') == 6 and not re.search(r'(src|href)="(?!data:)', page)
    except ImportError:
        assert "figure skipped" in md
    stages = report["manifest"]["stages"]
    assert set(stages) == {"train", "generate", "track_a", "grounding", "track_b", "report"}
    assert all(isinstance(stages[s]["wall_s"], float) for s in ("train", "generate", "track_a", "grounding", "track_b"))
    assert report["manifest"]["checksums"]["dataset"]["sha256"] == \
        json.loads((run / "train" / "config.json").read_text())["resolved"]["data_sha256"]


def test_report_tables_equal_tables_recomputed_from_per_item_files(resumed):
    run = resumed["run"]
    report = json.loads((run / "report.json").read_text())
    scores = jsonl(run / "track_a" / "scores.jsonl")
    per = {m: {r["id"]: r for r in scores if r["model"] == m} for m in ("base", "finetuned")}
    ids = sorted(per["base"])
    comp = report["table1"]["comparisons"][0]["metrics"]
    means = {s["model"]: s["means"] for s in report["table1"]["systems"]}
    for metric in METRICS:
        x = np.array([per["base"][i][metric] for i in ids])
        y = np.array([per["finetuned"][i][metric] for i in ids])
        assert means["base"][metric] == pytest.approx(x.mean()) and means["finetuned"][metric] == pytest.approx(y.mean())
        assert comp[metric]["mann_whitney"]["p"] == pytest.approx(stats.mannwhitneyu(x, y).pvalue)
        if np.any(x != y):
            assert comp[metric]["wilcoxon"]["p"] == pytest.approx(stats.wilcoxon(x, y).pvalue)
    judged = [r for r in jsonl(run / "track_b" / "judgments.jsonl") if r["status"] == "ok"]
    jper = {m: {r["id"]: r for r in judged if r["model"] == m} for m in ("base", "finetuned")}
    t2 = report["table2"]
    for d in DIMENSIONS:
        for m in ("base", "finetuned"):
            assert t2["mean"][m][d] == pytest.approx(np.mean([r[d] for r in jper[m].values()]))
        xb, xf = [jper["base"][i][d] for i in sorted(jper["base"])], [jper["finetuned"][i][d] for i in sorted(jper["base"])]
        assert t2["p_values"]["finetuned"][d]["mann_whitney"] == pytest.approx(stats.mannwhitneyu(xb, xf).pvalue)
    agreement = report["agreement"]["correlations"]["paired_difference"]
    for metric in METRICS:
        for d in DIMENSIONS:
            x = [per["finetuned"][i][metric] - per["base"][i][metric] for i in ids]
            y = [jper["finetuned"][i][d] - jper["base"][i][d] for i in ids]
            got = agreement[metric][d]["spearman"]["stat"]
            if len(set(x)) > 1 and len(set(y)) > 1:
                assert got == pytest.approx(stats.spearmanr(x, y).statistic)
            else:
                assert got is None


def test_rerun_skips_every_stage_and_changes_nothing(resumed, capsys):
    run = resumed["run"]
    files = ("generations/base.jsonl", "generations/finetuned.jsonl", "track_a/scores.jsonl", "track_b/judgments.jsonl")
    before = {f: (run / f).read_bytes() for f in files}
    rc = reproduce.main(["--config", str(resumed["cfg"]), "--run-dir", str(run), "--judge-standin"])
    out = capsys.readouterr().out
    assert rc == 0
    for stage in ("train", "generate", "track_a", "track_b"):
        assert f"[{stage}] complete" in out, out
    assert {f: (run / f).read_bytes() for f in files} == before
    # the plan line knows training is done; the terminal gets the report's Summary and Table 1 verbatim
    assert f"reproduce: the finished training run {run / 'train'}; then" in out
    report = (run / "report.md").read_text(encoding="utf-8")
    for title in ("## Summary", "## Table 1:"):
        section = report[report.index(title):].split("\n## ")[0].split("\n\n**N =")[0].strip()
        assert section in out and "| Fine-tuned model |" in report, title
    assert out.rstrip().endswith(f"reproduce: report written to {run / 'report.md'}")


def test_track_b_without_endpoint_is_skipped_with_one_line(resumed, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cfg = dict(SMALL, generation={"max_new_tokens": 8, "batch_size": 12, "limit": 6})
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    rc = reproduce.main(["--config", str(tmp_path / "c.json"), "--run-dir", str(tmp_path / "run"),
                         "--skip-train", "--train-run", str(resumed["run"] / "train")])
    out = capsys.readouterr().out
    assert rc == 0
    lines = [line for line in out.splitlines() if line.startswith("[track_b]")]
    assert len(lines) == 1 and "skipped" in lines[0] and "--judge-base-url" in lines[0] and "OPENAI_BASE_URL" in lines[0]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["table2"] is None and report["agreement"] is None and report["generation"]["n_items"] == 6
    assert "Track B skipped" in (tmp_path / "run" / "report.md").read_text()


def test_paper_preset_without_gated_weights_fails_with_one_line(tmp_path):
    (tmp_path / "hf").mkdir()
    p = reproduce_cli(["--preset", "paper", "--run-dir", str(tmp_path / "paper")], timeout=120,
                      HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_TOKEN="")
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: meta-llama/Llama-2-7b-chat-hf"), p.stderr
    assert "https://huggingface.co/meta-llama/Llama-2-7b-chat-hf" in lines[0] and "HF_TOKEN" in lines[0]
    assert p.stdout == "" and not (tmp_path / "paper").exists()


def test_rerun_without_endpoint_keeps_the_standin_warning(resumed, tmp_path, capsys, monkeypatch):
    """The stand-in's judgments, kept by a rerun without --judge-standin, are still reported as synthetic."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    run = resumed["run"]
    assert reproduce.main(["--config", str(resumed["cfg"]), "--run-dir", str(run)]) == 0
    assert "keeping the earlier judgments" in capsys.readouterr().out
    report = json.loads((run / "report.json").read_text())
    assert report["table2"] and report["track_b"]["standin"] is True
    assert "Track B used the loopback stand-in judge" in (run / "report.md").read_text()
    from pipeline.report import judged_by_standin

    (tmp_path / "track_b").mkdir()
    (tmp_path / "track_b" / "judgments.jsonl").write_text(json.dumps({"served_model": "gpt-4-0613"}) + "\n")
    assert not judged_by_standin(tmp_path)


def test_human_store_adds_track_c_to_the_report(resumed, tmp_path, capsys):
    """--human-store: Table C and Track C's agreement in the report; without ratings, how to start it."""
    from judge.human.study import open_study
    from judge.rubric import DIMENSIONS

    run = resumed["run"]
    pairs = [run / "generations" / "base.jsonl", run / "generations" / "finetuned.jsonl"]
    study = open_study(tmp_path / "ratings.sqlite", pairs, ["alice", "bob"], pairwise=False)
    args = ["--config", str(resumed["cfg"]), "--run-dir", str(run), "--judge-standin",
            "--human-store", str(tmp_path / "ratings.sqlite")]
    assert reproduce.main(args) == 0
    md = (run / "report.md").read_text()
    assert "## Track C" in md and "has no ratings yet: start it with `python -m judge.human serve" in md
    for rater in ("alice", "bob"):
        for q in study.store.queue(rater):
            score = 4 if q["system"] == "finetuned" else 2
            study.store.save_rating(rater, q["item"], {**{d: score for d in DIMENSIONS}, "harm": 0, "comment": ""},
                                    None)
    study.store.close()
    assert reproduce.main(args) == 0
    capsys.readouterr()
    report = json.loads((run / "report.json").read_text())
    c = report["track_c"]["summary"]
    n = len(jsonl(pairs[0]))
    assert c["n_ratings"] == 2 * 2 * n and c["table_c"]["mean"]["finetuned"]["accuracy"] == 4.0
    assert "Track C" in report["grounding"]["agreement"]["tracks"]
    md = (run / "report.md").read_text()
    assert "## Track C" in md and f"{2 * 2 * n} final ratings" in md


def test_wall_times_survive_the_kill(resumed):
    """The killed invocation's stage times are kept: train's time from the first run, and generation's two
    attempts (the killed one marked so)."""
    stages = json.loads((resumed["run"] / "pipeline.json").read_text())["stages"]
    assert stages["train"]["status"] == "done" and stages["train"]["wall_s"] > 0
    assert [a["status"] for a in stages["generate"]["attempts"]] == ["killed", "done"]
    assert stages["generate"]["wall_s"] == pytest.approx(sum(a["wall_s"] for a in stages["generate"]["attempts"]))


def test_stage_leftovers_without_a_marker_are_redone(resumed, tmp_path, capsys):
    """A kill after Track A wrote its files but before stage.done: the rerun redoes the stage itself."""
    run = resumed["run"]
    (run / "track_a" / "stage.done").unlink()
    (run / "grounding" / "stage.done").unlink()
    assert reproduce.main(["--config", str(resumed["cfg"]), "--run-dir", str(run), "--judge-standin"]) == 0
    assert (run / "track_a" / "stage.done").is_file() and (run / "grounding" / "stage.done").is_file()
    assert "[track_a] complete" not in capsys.readouterr().out


def test_missing_train_run_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert reproduce.main(["--train-run", str(tmp_path / "nope"), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a finished training run" in err[0] and not run.exists()


@pytest.mark.parametrize("when", ["warm-up", "fine-tuning"])
def test_ctrl_c_during_training_is_one_line_the_pipelines(tmp_path, when):
    """SIGINT while the training stage runs: one line, the pipeline's (not the training command's advice to use
    --resume, which the pipeline does not have), exit 130; the rerun resumes."""
    import time

    cfg = tmp_path / "small.json"
    warm_up = "400" if when == "warm-up" else "20"  # a long warm-up to interrupt, or a short one to get past
    slow_training = ["--demo-records", "120", "--demo-pretrain-steps", warm_up, "--max-steps", "400", "--val-size",
                     "12", "--eval-steps", "100", "--save-steps", "100", "--num-threads", "1"]
    cfg.write_text(json.dumps({**SMALL, "train_args": slow_training}))
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "reproduce.py"), "--config", str(cfg),
                             "--run-dir", str(run)], cwd=REPO, env=env(MEDLORA_CACHE=str(tmp_path / "cache")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = run / "train" / ("demo_data.json" if when == "warm-up" else "metrics.jsonl")
    t0 = time.time()
    while not marker.exists() and time.time() - t0 < 240:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    lines = [ln for ln in err.splitlines() if ln.startswith(("interrupted", "error", "Traceback"))]
    assert proc.returncode == 130 and lines == ["interrupted (SIGINT); rerun the same command to resume"], err[-2000:]
