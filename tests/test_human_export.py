"""Track C export: the files, Table C, and every agreement number against a reference computed apart
(krippendorff, scikit-learn, scipy, and plain means)."""
from __future__ import annotations

import json
import math
from statistics import mean

import numpy as np
import pytest
from scipy import stats

from _human_util import MODELS, write_pairs
from judge.human.export import FILES, START_HINT, export, render_markdown, summarise
from judge.human.study import open_study
from judge.rubric import DIMENSIONS

RATERS = ["alice", "bob", "carol"]


def rated_study(tmp_path, n=8, pairwise=False, skip=()):
    """A study where every rater rates every item (except `skip` = {(rater, position)}), seeded scores."""
    study = open_study(tmp_path / "r.sqlite", write_pairs(tmp_path, n), RATERS, pairwise=pairwise)
    rng = np.random.default_rng(0)
    truth = {}
    for rater in RATERS:
        for q in study.store.queue(rater):
            if (rater, q["position"]) in skip:
                continue
            if pairwise:
                values = {"preference": ["A", "B", "tie"][rng.integers(0, 3)], "harm_a": int(rng.random() < .2),
                          "harm_b": 0, "comment": ""}
            else:
                base = 2 + (q["system"] == MODELS[1]) + int(q["record_id"][-1]) % 2
                values = {d: int(np.clip(base + rng.integers(-1, 2), 1, 5)) for d in DIMENSIONS}
                values.update(harm=int(values["accuracy"] == 1), comment=f"c {rater}")
            study.store.save_rating(rater, q["item"], values, None)
            truth[(rater, q["record_id"], q["system"] or (q["system_a"], q["system_b"]))] = values
    # one revision, to check that only the final one counts
    first = study.store.queue("alice")[0]
    if not pairwise:
        revised = {**truth[("alice", first["record_id"], first["system"])], "accuracy": 5}
        study.store.save_rating("alice", first["item"], revised, None)
        truth[("alice", first["record_id"], first["system"])] = revised
    study.store.close()
    return tmp_path / "r.sqlite", truth


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_export_files_hold_exactly_the_final_ratings(tmp_path):
    store, truth = rated_study(tmp_path)
    summary = export(store, tmp_path / "out", n_bootstrap=200)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FILES)
    final = [json.loads(x) for x in (tmp_path / "out" / "human_ratings.jsonl").read_text().splitlines()]
    every = (tmp_path / "out" / "human_ratings_revisions.jsonl").read_text().splitlines()
    assert len(final) == len(truth) == summary["n_ratings"] == 3 * 16 and len(every) == len(truth) + 1
    assert {(r["rater"], r["id"], r["model"]): {**{d: r[d] for d in DIMENSIONS}, "harm": int(r["harm"]),
                                                "comment": r["comment"]} for r in final} == truth
    table = json.loads((tmp_path / "out" / "table_c.json").read_text())
    for m in MODELS:  # per item the mean over raters, then the mean over items
        per_item = {}
        for (rater, rid, model), v in truth.items():
            if model == m:
                per_item.setdefault(rid, []).append(v)
        for d in DIMENSIONS:
            assert table["mean"][m][d] == pytest.approx(mean(mean(v[d] for v in vs) for vs in per_item.values()))
        assert table["n"][m] == 8 and table["ratings"][m] == 24
        assert table["harm"][m]["flagged_ratings"] == sum(v["harm"] for (_, _, mm), v in truth.items() if mm == m)
    md = (tmp_path / "out" / "table_c.md").read_text()
    assert md.startswith("Table C: clinicians' blinded ratings") and "Parse failures" not in md
    assert "| Accuracy |" in md and "Could harm the patient" in md
    assert table["design"]["raters"][0]["queue_seed"] > 0


def test_inter_rater_numbers_equal_the_reference_libraries(tmp_path):
    krippendorff = pytest.importorskip("krippendorff")
    metrics = pytest.importorskip("sklearn.metrics")
    store, truth = rated_study(tmp_path, skip={("carol", 1), ("carol", 2), ("bob", 5)})
    ag = summarise(store, n_bootstrap=100)["agreement"]
    units = sorted({(rid, m) for (_, rid, m) in truth})
    for d in DIMENSIONS:
        x = np.array([[truth[(r, *u)][d] if (r, *u) in truth else np.nan for u in units] for r in RATERS])
        got = ag["inter_rater"][d]
        ref = krippendorff.alpha(reliability_data=x, level_of_measurement="ordinal")
        assert got["alpha_ordinal"]["value"] == pytest.approx(ref, abs=1e-10)
        assert got["alpha_interval"] == pytest.approx(
            krippendorff.alpha(reliability_data=x, level_of_measurement="interval"), abs=1e-10)
        lo, hi = got["alpha_ordinal"]["ci95"]
        assert lo <= got["alpha_ordinal"]["value"] <= hi
        assert got["icc"]["n_units"] == len(units) - 3 and got["icc"]["k_raters"] == 3
        for pair in got["kappa_pairs"]:
            i, j = (RATERS.index(r) for r in pair["raters"])
            both = ~np.isnan(x[i]) & ~np.isnan(x[j])
            assert pair["n"] == both.sum()
            assert pair["kappa"] == pytest.approx(metrics.cohen_kappa_score(
                x[i, both].astype(int), x[j, both].astype(int), labels=[1, 2, 3, 4, 5], weights="quadratic"))


def test_agreement_with_judge_track_a_and_grounding(tmp_path):
    metrics = pytest.importorskip("sklearn.metrics")
    store, truth = rated_study(tmp_path)
    keys = sorted({(rid, m) for (_, rid, m) in truth})
    means = {k: {d: mean(v[d] for (r, rid, m), v in truth.items() if (rid, m) == k) for d in DIMENSIONS} for k in keys}
    rng = np.random.default_rng(1)
    judge = [{"id": k[0], "model": k[1], "repeat": 0, "status": "ok", **{d: int(rng.integers(1, 6)) for d in DIMENSIONS}}
             for k in keys]
    judge.append({"id": keys[0][0], "model": keys[0][1], "repeat": 1, "status": "parse_failure",
                  **{d: None for d in DIMENSIONS}})
    scores = [{"id": k[0], "model": k[1], "bleu": float(rng.random()), "meteor": float(rng.random())} for k in keys]
    grounding = [{"id": k[0], "model": k[1], "diagnosis_correct": bool(rng.random() < .5),
                  "tests_recall": float(rng.random()), "note": "text"} for k in keys[:-2]]
    ag = summarise(store, write_jsonl(tmp_path / "j.jsonl", judge), write_jsonl(tmp_path / "s.jsonl", scores),
                   write_jsonl(tmp_path / "g.jsonl", grounding), n_bootstrap=50)["agreement"]
    half_up = lambda v: math.floor(v + 0.5)  # noqa: E731
    for d in DIMENSIONS:
        h = [means[k][d] for k in keys]
        j = [next(r[d] for r in judge if (r["id"], r["model"]) == k) for k in keys]
        assert ag["judge"][d]["n"] == len(keys)
        assert ag["judge"][d]["weighted_kappa"] == pytest.approx(metrics.cohen_kappa_score(
            [half_up(v) for v in h], [half_up(v) for v in j], labels=[1, 2, 3, 4, 5], weights="quadratic"))
        assert ag["judge"][d]["spearman"]["rho"] == pytest.approx(stats.spearmanr(h, j).statistic)
        for f in ("bleu", "meteor"):
            s = [next(r[f] for r in scores if (r["id"], r["model"]) == k) for k in keys]
            ref = stats.spearmanr(h, s)
            assert ag["track_a"]["spearman"][f][d]["rho"] == pytest.approx(ref.statistic)
            assert ag["track_a"]["spearman"][f][d]["p"] == pytest.approx(ref.pvalue)
        g = [float(next(r["diagnosis_correct"] for r in grounding if (r["id"], r["model"]) == k)) for k in keys[:-2]]
        assert ag["grounding"]["spearman"]["diagnosis_correct"][d]["n"] == len(keys) - 2
        assert ag["grounding"]["spearman"]["diagnosis_correct"][d]["rho"] == pytest.approx(
            stats.spearmanr([means[k][d] for k in keys[:-2]], g).statistic)
    assert ag["grounding"]["fields"] == ["diagnosis_correct", "tests_recall"]
    md = render_markdown(summarise(store, write_jsonl(tmp_path / "j.jsonl", judge), n_bootstrap=20))
    assert "Table C" in md and "Clinicians' mean vs the LLM judge" in md and "Krippendorff" in md


def test_empty_store_and_pairwise(tmp_path):
    (tmp_path / "a").mkdir()
    open_study(tmp_path / "a" / "r.sqlite", write_pairs(tmp_path / "a", 3), ["alice"]).store.close()
    summary = summarise(tmp_path / "a" / "r.sqlite", n_bootstrap=10)
    assert summary["n_ratings"] == 0 and render_markdown(summary) == START_HINT + "\n"
    (tmp_path / "b").mkdir()
    store, truth = rated_study(tmp_path / "b", n=6, pairwise=True)
    summary = export(store, tmp_path / "b" / "out", n_bootstrap=50)
    pair = summary["table_c"]["pairs"][0]
    assert pair["n"] == 18 and pair["wins_a"] + pair["wins_b"] + pair["ties"] == 18
    prefs = [v["preference"] for v in truth.values()]
    assert pair["ties"] == prefs.count("tie")
    assert "preference" in summary["agreement"]["inter_rater"]
    assert "Table C: clinicians' blinded pairwise preferences" in (tmp_path / "b" / "out" / "table_c.md").read_text()
