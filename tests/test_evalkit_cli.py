"""``python -m evalkit score``: end to end on small JSONL files, exclusions, overwrite rules, bad input."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import evalkit
from evalkit.cli import main
from evalkit.smoothing import BleuWarning
from evalkit.stats import mann_whitney_u, wilcoxon_signed_rank

REPO = Path(__file__).resolve().parents[1]
METRICS = ["bleu", "rouge1", "rouge2", "rougeL", "meteor"]
FAST = ["--bootstrap", "300", "--permutations", "300", "--quiet"]

SENTENCES = [
    "You may have a viral infection; drink fluids and rest for a few days.",
    "The symptoms suggest migraine. We should run a CT scan of the head.",
    "It sounds like asthma. I recommend a spirometry test and an inhaler.",
    "Your rash could be contact dermatitis; avoid the irritant and use a steroid cream.",
    "This may be a urinary tract infection. A urinalysis and antibiotics are needed.",
    "Back pain like yours is often muscular; physical therapy will help.",
]


def item(i: int, model: str, response: str, **extra) -> dict:
    ref = SENTENCES[i % len(SENTENCES)] + f" Follow up in {i + 2} weeks."
    return {"id": f"q{i}", "model": model, "prompt": f"Doctor, question {i}?", "reference": ref,
            "response": response, **extra}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def two_systems(tmp_path):
    base, tuned = [], []
    for i in range(24):
        ref_words = (SENTENCES[i % len(SENTENCES)] + f" Follow up in {i + 2} weeks.").split()
        base.append(item(i, "llama-2-base", " ".join(ref_words[::2]) + " Please see a doctor.", finish_reason="stop"))
        if i == 3:
            continue  # q3 missing for the tuned system
        resp = "" if i == 5 else " ".join(ref_words[:-2])
        tuned.append(item(i, "llama-2-lora", resp, finish_reason="length" if i == 8 else "stop"))
    return write_jsonl(tmp_path / "base.jsonl", base), write_jsonl(tmp_path / "tuned.jsonl", tuned)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (float(v) if k in METRICS else v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_end_to_end_tables_agree_with_per_item_files(two_systems, tmp_path):
    base, tuned = two_systems
    out = tmp_path / "out"
    assert main(["score", "--pairs", str(base), "--pairs", str(tuned), "--out", str(out), "--no-figures", *FAST]) == 0
    rows = read_csv(out / "scores.csv")
    jrows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert rows == jrows and len(rows) == 2 * 21
    assert set(jrows[0]) == {"id", "model", *METRICS}
    # Each value is the public metric function applied to the record.
    first = json.loads(base.read_text().splitlines()[0])
    assert jrows[0]["bleu"] == evalkit.bleu(first["response"], first["reference"])
    assert jrows[0]["rougeL"] == evalkit.rouge(first["response"], first["reference"])["rougeL"]
    assert jrows[0]["meteor"] == evalkit.meteor(first["response"], first["reference"])

    exclusions = json.loads((out / "exclusions.json").read_text())
    reasons = {(e["id"], e["model"]): e["reason"] for e in exclusions["exclusions"]}
    assert reasons == {("q3", "llama-2-lora"): "missing", ("q5", "llama-2-lora"): "empty",
                       ("q8", "llama-2-lora"): "truncated"}
    assert exclusions["excluded_ids"] == ["q3", "q5", "q8"] and exclusions["n_kept"] == 21
    assert not any(r["id"] in ("q3", "q5", "q8") for r in rows)  # excluded for both systems

    table = json.loads((out / "table1.json").read_text())
    assert table["n"] == 21
    by_model = {m: {k: np.array([r[k] for r in rows if r["model"] == m]) for k in METRICS}
                for m in ("llama-2-base", "llama-2-lora")}
    comp = table["comparisons"][0]
    for k in METRICS:
        x, y = by_model["llama-2-base"][k], by_model["llama-2-lora"][k]
        assert table["systems"][0]["means"][k] == pytest.approx(x.mean(), rel=1e-12)
        assert comp["metrics"][k]["difference"] == pytest.approx(y.mean() - x.mean(), abs=1e-12)
        assert comp["metrics"][k]["mann_whitney"]["p"] == pytest.approx(mann_whitney_u(x, y).pvalue, rel=1e-12)
        assert comp["metrics"][k]["wilcoxon"]["p"] == pytest.approx(wilcoxon_signed_rank(x, y).pvalue, rel=1e-12)
        lo, hi = comp["metrics"][k]["bootstrap_ci95"]
        assert lo <= y.mean() - x.mean() <= hi
    md = (out / "table1.md").read_text()
    for label in ("| Model | BLEU | ROUGE-1F | ROUGE-2F | ROUGE-LF | METEOR |", "| llama-2-base (baseline) |",
                  "| Difference |", "| Improvement (%) |", "| p-value (Mann-Whitney) |", "N = 21 items",
                  "1 empty, 1 truncated, 1 missing", "`q3`", "Wilcoxon signed-rank p", "Paired bootstrap 95% CI",
                  "Approximate randomisation p", "Cohen's d_z"):
        assert label in md, label
    mean_bleu = f"{by_model['llama-2-lora']['bleu'].mean():.4f}"
    assert f"| llama-2-lora | {mean_bleu} |" in md


def test_keep_truncated_and_figures(two_systems, tmp_path):
    pytest.importorskip("matplotlib")
    base, tuned = two_systems
    out = tmp_path / "out"
    args = ["score", "--pairs", str(base), "--pairs", str(tuned), "--out", str(out), "--keep-truncated", *FAST]
    assert main(args) == 0
    exclusions = json.loads((out / "exclusions.json").read_text())
    assert exclusions["excluded_ids"] == ["q3", "q5"]
    assert [e["id"] for e in exclusions["kept_truncated"]] == ["q8"]
    table = json.loads((out / "table1.json").read_text())
    assert table["n"] == 22 and table["figures"] == [f"dist_{m}.png" for m in METRICS]
    for name in table["figures"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*tmp*"))  # no temporary file left behind


def test_without_matplotlib_the_figure_is_skipped_and_said(two_systems, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    base, tuned = two_systems
    out = tmp_path / "out"
    assert main(["score", "--pairs", str(base), "--pairs", str(tuned), "--out", str(out), *FAST]) == 0
    assert not list(out.glob("*.png"))
    assert json.loads((out / "table1.json").read_text())["figure_note"] == "figure skipped (matplotlib not installed)"
    assert "figure skipped (matplotlib not installed)" in (out / "table1.md").read_text()


def test_refuses_to_overwrite_without_force(two_systems, tmp_path, capsys):
    base, tuned = two_systems
    out = tmp_path / "out"
    args = ["score", "--pairs", str(base), "--pairs", str(tuned), "--out", str(out), "--no-figures", *FAST]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "exists; pass --force" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main([*args, "--force"]) == 0


def test_three_systems_compare_each_with_the_first(two_systems, tmp_path):
    base, tuned = two_systems
    third = write_jsonl(tmp_path / "third.jsonl",
                        [dict(json.loads(line), model="other") for line in base.read_text().splitlines()])
    out = tmp_path / "out"
    assert main(["score", "--pairs", str(base), "--pairs", str(tuned), "--pairs", str(third), "--out", str(out),
                 "--no-figures", *FAST]) == 0
    table = json.loads((out / "table1.json").read_text())
    assert [c["model"] for c in table["comparisons"]] == ["llama-2-lora", "other"]
    assert all(c["baseline"] == "llama-2-base" for c in table["comparisons"])
    assert table["comparisons"][1]["metrics"]["bleu"]["difference"] == 0.0  # same responses as the baseline
    assert "| Difference (other) |" in (out / "table1.md").read_text()


GOOD = item(0, "m", "a response")


@pytest.mark.parametrize("lines,problem", [
    ([GOOD, '{"id": "q1", "model": "m",'], "2: invalid JSON"),
    ([GOOD, "[1, 2]"], "2: expected a JSON object, got list"),
    ([{k: v for k, v in GOOD.items() if k != "reference"}], "1: missing field 'reference'"),
    ([dict(GOOD, id=7)], "1: field 'id' must be a string, got number"),
    ([dict(GOOD, response=None)], "1: field 'response' must be a string, got null"),
    ([GOOD, GOOD], "2: duplicate id 'q0' (first on line 1)"),
    ([GOOD, dict(item(1, "m", "x"), finish_reason="eos")], "2: field 'finish_reason' must be 'stop' or 'length'"),
    ([GOOD, item(1, "other", "x")], "2: model 'other' differs from 'm'"),
    ([GOOD, item(0, "other", "x")], "2: model 'other' differs from 'm'"),  # cat base.jsonl tuned.jsonl
    ([], " no records (empty file)"),
])
def test_bad_input_names_file_and_line(tmp_path, capsys, lines, problem):
    bad = write_jsonl(tmp_path / "bad.jsonl", lines)
    out = tmp_path / "out"
    assert main(["score", "--pairs", str(bad), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {bad}:{problem}" + err.split(problem, 1)[1] and err.count("\n") == 1, err
    assert not out.exists()  # nothing written


def test_mismatched_ids_between_systems(tmp_path, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", [item(0, "a", "x"), item(1, "a", "y")])
    changed = dict(item(1, "b", "y"), reference="a different reference")
    b = write_jsonl(tmp_path / "b.jsonl", [item(0, "b", "x"), changed])
    out = tmp_path / "out"
    assert main(["score", "--pairs", str(a), "--pairs", str(b), "--out", str(out), *FAST]) == 2
    assert capsys.readouterr().err.startswith(f"error: {b}:2: id 'q1' has a different reference than in {a}:2")
    c = write_jsonl(tmp_path / "c.jsonl", [item(0, "c", "x")])
    assert main(["score", "--pairs", str(a), "--pairs", str(c), "--out", str(out), "--strict-ids", *FAST]) == 2
    assert capsys.readouterr().err.startswith(f"error: {a}:2: id 'q1' is not in {c}")
    d = write_jsonl(tmp_path / "d.jsonl", [item(5, "d", "x")])
    assert main(["score", "--pairs", str(a), "--pairs", str(d), "--out", str(out), *FAST]) == 2
    assert "no item left to score" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_module_entry_point_exit_status_and_no_traceback(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", ["not json"])
    proc = subprocess.run([sys.executable, "-m", "evalkit", "score", "--pairs", str(bad), "--out",
                           str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {bad}:1: invalid JSON") and "Traceback" not in proc.stderr


def test_single_system_gives_means_only(two_systems, tmp_path):
    base, _ = two_systems
    out = tmp_path / "out"
    assert main(["score", "--pairs", str(base), "--out", str(out), "--no-figures", "--bleu-preset", "nltk",
                 "--stem", "--rouge-beta", "1.2", "--no-meteor-penalty", *FAST]) == 0
    table = json.loads((out / "table1.json").read_text())
    assert table["comparisons"] == [] and table["n"] == 24
    assert table["settings"]["bleu_preset"] == "nltk" and table["settings"]["rouge_beta"] == 1.2
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    first = json.loads(base.read_text().splitlines()[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BleuWarning)  # NLTK's method0 warns about orders without matches
        assert rows[0]["bleu"] == evalkit.bleu(first["response"], first["reference"], preset="nltk")
    assert rows[0]["rouge2"] == evalkit.rouge(first["response"], first["reference"], beta=1.2, stem=True)["rouge2"]
    assert rows[0]["meteor"] == evalkit.meteor(first["response"], first["reference"], penalty=False)
    assert "One system: no comparison." in (out / "table1.md").read_text()


def test_metric_refusal_is_reported_with_file_and_line(tmp_path, capsys):
    pairs = write_jsonl(tmp_path / "a.jsonl", [item(0, "a", "Follow"), item(1, "a", "zzz qqq www")])
    out = tmp_path / "out"
    args = ["score", "--pairs", str(pairs), "--out", str(out), "--bleu-preset", "nltk", "--bleu-smooth", "method6"]
    assert main([*args, *FAST]) == 2
    assert capsys.readouterr().err.startswith(f"error: {pairs}:1: cannot score id 'q0': nltk smoothing method6")
    assert not out.exists()
