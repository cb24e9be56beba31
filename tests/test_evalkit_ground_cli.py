"""``python -m evalkit ground``: end to end on hand-built files, Table 3's numbers, overwrite rules, bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evalkit import GroundingScorer, load_disease_db, write_disease_db
from evalkit.cli import main
from evalkit.stats import mann_whitney_u, mcnemar_exact, wilcoxon_signed_rank, wilson_interval

REPO = Path(__file__).resolve().parents[1]
FAST = ["--bootstrap", "300", "--permutations", "300", "--quiet"]
DB_ROWS = [
    ("Panic disorder", ["Palpitations"], ["Depression screen (Depression screening)", "Electrocardiogram"],
     ["Alprazolam (Xanax)", "Lorazepam"]),
    ("Migraine", ["Headache"], ["Magnetic resonance imaging (Mri)"], ["Sumatriptan (Imitrex)", "Ibuprofen"]),
    ("Asthma", ["Wheezing"], ["Spirometry", "Plain x-ray (X ray)"], ["Albuterol", "Prednisone"]),
]
CONDITIONS = ["panic disorder", "migraine", "asthma"]
TESTS = ["an electrocardiogram", "an MRI", "spirometry"]
MEDS = ["lorazepam", "sumatriptan", "albuterol"]


def item(i: int, model: str, response: str, **extra) -> dict:
    c = i % 3
    ref = f"It sounds like {CONDITIONS[c]}. We need {TESTS[c]}; take {MEDS[c]}."
    if i % 10 == 9:
        ref = "Please rest and come back next week."  # names no condition: ungrounded
    return {"id": f"q{i}", "model": model, "prompt": f"Question {i}?", "reference": ref, "response": response, **extra}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    db = write_disease_db(tmp_path / "db.csv", DB_ROWS)
    base, tuned = [], []
    for i in range(30):
        c, wrong = i % 3, (i + 1) % 3
        base.append(item(i, "base", f"Maybe {CONDITIONS[wrong]}. Try {MEDS[c]} and {MEDS[wrong]}." if i % 4
                         else f"Maybe {CONDITIONS[c]}, or {CONDITIONS[wrong]}."))
        if i == 4:
            continue  # missing for the tuned system
        resp = "" if i == 7 else (f"You have {CONDITIONS[c]}; get {TESTS[c]} and take {MEDS[c]}." if i % 5
                                  else "Rest and drink water.")
        tuned.append(item(i, "tuned", resp, finish_reason="length" if i == 11 else "stop"))
    return db, write_jsonl(tmp_path / "base.jsonl", base), write_jsonl(tmp_path / "tuned.jsonl", tuned)


def test_end_to_end(files, tmp_path):
    db, base, tuned = files
    out = tmp_path / "out"
    assert main(["ground", "--pairs", str(base), "--pairs", str(tuned), "--db", str(db), "--out", str(out), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["exclusions.json", "grounding.jsonl", "table3.json", "table3.md"]
    rows = [json.loads(line) for line in (out / "grounding.jsonl").read_text().splitlines()]
    kept = [f"q{i}" for i in range(30) if i not in (4, 7, 11)]
    assert [r["id"] for r in rows] == kept * 2 and [r["model"] for r in rows] == ["base"] * 27 + ["tuned"] * 27
    scorer = GroundingScorer(load_disease_db(db))
    records = {(json.loads(x)["id"], json.loads(x)["model"]): json.loads(x)
               for p in (base, tuned) for x in p.read_text().splitlines()}
    for r in rows:  # each row is the public scorer applied to the record
        rec = records[r["id"], r["model"]]
        assert r == {"id": r["id"], "model": r["model"], **scorer.score(rec["response"], rec["reference"])}

    ex = json.loads((out / "exclusions.json").read_text())
    reasons = {(e["id"], e["reason"]) for e in ex["exclusions"]}
    assert reasons == {("q4", "missing"), ("q7", "empty"), ("q11", "truncated")}
    assert [u["id"] for u in ex["ungrounded"]] == ["q9", "q19", "q29"] and ex["n_grounded"] == 24
    assert all(u["reason"] == "ungrounded" and u["file"] == str(base) for u in ex["ungrounded"])

    t = json.loads((out / "table3.json").read_text())
    grounded = [r for r in rows if r["reference_condition"] is not None]
    by = {m: [r for r in grounded if r["model"] == m] for m in ("base", "tuned")}
    assert t["n"] == 24 and t["coverage"] == 24 / 27
    for s in t["systems"]:
        for field in ("diagnosis_correct", "tests_recall", "medications_precision"):
            vals = [r[field] for r in by[s["model"]] if r[field] is not None]
            assert s["means"][field] == pytest.approx(np.mean(vals), abs=1e-12)
            assert s["n_undefined"][field] == 24 - len(vals)
        k = sum(r["diagnosis_correct"] for r in by[s["model"]])
        assert s["proportions"]["diagnosis_correct"]["successes"] == k
        assert s["proportions"]["diagnosis_correct"]["wilson_ci95"] == list(wilson_interval(k, 24))
        counts = [len(r["unsupported_medications"]) for r in by[s["model"]]]
        assert s["means"]["unsupported_medications"] == pytest.approx(np.mean(counts), abs=1e-12)
    x = [r["diagnosis_correct"] for r in by["base"]]
    y = [r["diagnosis_correct"] for r in by["tuned"]]
    col = t["comparisons"][0]["columns"]["diagnosis_correct"]
    b = sum(1 for u, v in zip(x, y) if u == 1 and v == 0)
    c = sum(1 for u, v in zip(x, y) if u == 0 and v == 1)
    assert (col["mcnemar"]["b"], col["mcnemar"]["c"]) == (b, c) and col["mcnemar"]["p"] == mcnemar_exact(x, y).pvalue
    assert col["mann_whitney"]["p"] == pytest.approx(mann_whitney_u(x, y).pvalue, rel=1e-12)
    assert col["wilcoxon"]["p"] == pytest.approx(wilcoxon_signed_rank(x, y).pvalue, rel=1e-12)
    prec = t["comparisons"][0]["columns"]["tests_precision"]  # defined for different items per model
    assert prec["n_baseline"] == t["systems"][0]["n_defined"]["tests_precision"]
    assert prec["n_pairs"] <= min(prec["n_baseline"], prec["n"])

    md = (out / "table3.md").read_text()
    for text in ("| Model | Diagnosis correct | Diagnosis mentioned | Tests recall | Tests precision |",
                 "| base (baseline) |", "| Difference |", "| p-value (Mann-Whitney) |", "N = 24 grounded items",
                 "3 ungrounded", "1 empty, 1 truncated, 1 missing", "95% Wilson CI", f"b = {b}, c = {c}",
                 "McNemar exact p", "Wilcoxon signed-rank p", "Undefined: base:", "Excluded ids: `q4`, `q7`, `q11`",
                 "Ungrounded ids: `q9`, `q19`, `q29`"):
        assert text in md, text
    k = t["systems"][1]["proportions"]["diagnosis_correct"]["successes"]
    lo, hi = wilson_interval(k, 24)
    assert f"| tuned | {k}/24 = {k / 24:.4f} | [{lo:.4f}, {hi:.4f}] |" in md


@pytest.mark.slow
def test_refuses_to_overwrite_without_force(files, tmp_path, capsys):
    db, base, tuned = files
    out = tmp_path / "out"
    args = ["ground", "--pairs", str(base), "--pairs", str(tuned), "--db", str(db), "--out", str(out), *FAST]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}/") and "exists; pass --force" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main([*args, "--force"]) == 0
    assert not list(out.glob(".*tmp*"))


def _bad_db(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "bad.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


HEADER = "idx,disease,Symptom,reason,TestsAndProcedures,commonMedications\n"


@pytest.mark.parametrize("make,problem", [
    (lambda d: d / "absent.csv", "absent.csv: cannot read: No such file or directory"),
    (lambda d: _bad_db(d, HEADER.replace(",Symptom", "") + "0,Flu,,[],[]\n"), "bad.csv:1: missing column 'Symptom'"),
    (lambda d: _bad_db(d, HEADER + "0,Flu,\"['Fever'\",,[],[]\n"),
     "bad.csv:2: column 'Symptom' of 'Flu': malformed list"),
    (lambda d: _bad_db(d, (HEADER + "0,Gr\u00fcn,[],,[],[]\n").encode("latin-1")), "bad.csv:2: not UTF-8 (byte 0xfc)"),
    (lambda d: _bad_db(d, HEADER + "0,Gout,[],,[],[]\n"), "bad.csv: no grounded item: none of the 27 scored"),
])
def test_bad_database_one_line_exit_2_nothing_written(files, tmp_path, capsys, make, problem):
    _, base, tuned = files
    db, out = make(tmp_path), tmp_path / "out"
    code = main(["ground", "--pairs", str(base), "--pairs", str(tuned), "--db", str(db), "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {tmp_path}/{problem}") and err.count("\n") == 1, err
    assert not out.exists()


def test_bad_pairs_and_options(files, tmp_path, capsys):
    db, base, _ = files
    out = tmp_path / "out"
    bad = write_jsonl(tmp_path / "bad.jsonl", [item(0, "m", "x"), '{"id": "q1",'])
    assert main(["ground", "--pairs", str(bad), "--db", str(db), "--out", str(out), *FAST]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad}:2: invalid JSON")
    assert main(["ground", "--pairs", str(base), "--db", str(db), "--out", str(out), "--bootstrap", "0"]) == 2
    assert capsys.readouterr().err == "error: --bootstrap: must be >= 1, got 0\n"
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    assert main(["ground", "--pairs", str(base), "--db", str(db), "--out", str(afile), *FAST]) == 2
    assert capsys.readouterr().err == f"error: --out {afile}: exists and is not a folder\n"
    assert afile.read_text() == "keep me" and not out.exists()


def test_single_system(files, tmp_path):
    db, base, _ = files
    out = tmp_path / "out"
    assert main(["ground", "--pairs", str(base), "--db", str(db), "--out", str(out), *FAST]) == 0
    t = json.loads((out / "table3.json").read_text())
    assert t["comparisons"] == [] and t["n"] == 27 and len(t["systems"]) == 1


@pytest.mark.slow
def test_module_entry_point_exit_status_and_no_traceback(files, tmp_path):
    _, base, tuned = files
    proc = subprocess.run([sys.executable, "-m", "evalkit", "ground", "--pairs", str(base), "--pairs", str(tuned),
                           "--db", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "out")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == f"error: {tmp_path / 'absent.csv'}: cannot read: No such file or directory\n"


@pytest.mark.parametrize("case", ["device", "folder", "too_large", "deep"])
def test_inputs_that_would_never_end_or_fill_the_memory_are_one_line(tmp_path, capsys, monkeypatch, case):
    """`--db /dev/zero` used to read until the machine ran out of memory; a 100,000-deep JSON line ended in a
    RecursionError traceback. Each input is checked (regular file, size limit) before it is read."""
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps({"id": "1", "model": "m", "prompt": "p", "reference": "flu", "response": "flu"}) + "\n")
    db = tmp_path / "db.csv"
    db.write_text("idx,disease,Symptom,reason,TestsAndProcedures,commonMedications\n0,flu,['fever'],,[],[]\n")
    expect = {"device": ("/dev/zero", "is not a regular file"), "folder": (str(tmp_path), "is a folder, not a file"),
              "too_large": (str(pairs), "more than the 10 bytes limit"), "deep": (str(db), "")}[case]
    args = ["ground", "--pairs", str(pairs), "--db", expect[0], "--out", str(tmp_path / "out")]
    if case == "too_large":
        monkeypatch.setenv("MEDLORA_MAX_INPUT_MB", str(10 / 2**20))
    if case == "deep":
        pairs.write_text("[" * 100_000 + "]" * 100_000 + "\n")
        expect = (str(pairs), ":1: invalid record: JSON nested too deeply")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {expect[0] if case != 'deep' else pairs}") \
        and expect[1] in err, err
    assert not (tmp_path / "out").exists()


def test_table3_says_when_the_difference_compares_different_items(files, tmp_path):
    """A ratio undefined for different items per model: the Difference row (means over each model's own items) and
    the Difference on the common items (the items defined for both) differ, and the note says why."""
    db, base, tuned = files
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "evalkit", "ground", "--pairs", str(base), "--pairs", str(tuned),
                           "--db", str(db), "--out", str(out), *FAST], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "grounding.jsonl").read_text().splitlines()]
    md = (out / "table3.md").read_text()
    header = md.splitlines()[2].split(" | ")
    difference = next(line for line in md.splitlines() if line.startswith("| Difference |")).split(" | ")
    on_common = next(line for line in md.splitlines() if line.startswith("| Difference on the common items |"))
    checked = 0
    for field, label in (("tests_precision", "Tests precision"), ("medications_precision", "Medications precision")):
        value = {(r["id"], r["model"]): r[field] for r in rows if r["reference_condition"] is not None}
        ids = sorted({i for i, _ in value})
        defined = {m: [value[i, m] for i in ids if value[i, m] is not None] for m in ("base", "tuned")}
        common = [i for i in ids if value[i, "base"] is not None and value[i, "tuned"] is not None]
        if not (defined["base"] and defined["tuned"] and common) or len(defined["base"]) == len(defined["tuned"]):
            continue
        own = np.mean(defined["tuned"]) - np.mean(defined["base"])
        paired = np.mean([value[i, "tuned"] - value[i, "base"] for i in common])
        column = header.index(label)
        assert difference[column] == f"{own:+.4f}" and on_common.split(" | ")[column] == f"{paired:+.4f}"
        checked += 1
    assert checked  # the files hold the case in question
    assert "its Difference and Mann-Whitney p are over each model's own defined items (N defined), which differ " \
           "where the Ns differ" in " ".join(md.split())
