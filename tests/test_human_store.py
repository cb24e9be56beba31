"""Track C storage, queues and study setup: SQLite (WAL, schema version, revisions), seeded queues,
balanced A/B sides, even coverage with --per-rater, and a reopened study that keeps its design."""
from __future__ import annotations

import sqlite3
from collections import Counter
from itertools import combinations

import pytest

from _human_util import MODELS, write_pairs
from judge.errors import JudgeError
from judge.human.assign import build_queue, choose_ids, rater_seed
from judge.human.auth import Gate, token_hash
from judge.human.store import SCHEMA_VERSION, Store, create_store
from judge.human.study import open_study, parse_raters
from judge.rubric import DIMENSIONS


def test_rater_seed_is_recorded_and_reproducible(tmp_path):
    study = open_study(tmp_path / "s.sqlite", write_pairs(tmp_path, 5), ["alice", "bob"], seed=7)
    rows = {r["name"]: r for r in study.store.raters()}
    assert rows["alice"]["seed"] == rater_seed(7, "alice") != rater_seed(7, "bob")
    queue = [(q["record_id"], q["system"]) for q in study.store.queue("alice")]
    again, _ = build_queue([f"RECID-{i:04d}" for i in range(5)], list(MODELS), False, rows["alice"]["seed"])
    assert [(q["record_id"], q["system"]) for q in again] == queue  # the order can be rebuilt from the seed
    assert sorted(queue) == sorted((f"RECID-{i:04d}", m) for i in range(5) for m in MODELS)
    other = [(q["record_id"], q["system"]) for q in study.store.queue("bob")]
    assert other != queue  # each rater has their own order


@pytest.mark.parametrize("n_systems,n_ids", [(2, 9), (2, 10), (3, 7)])
def test_pairwise_sides_are_balanced_per_rater(n_systems, n_ids):
    systems = [f"s{k}" for k in range(n_systems)]
    for seed in range(20):
        queue, flip = build_queue([str(i) for i in range(n_ids)], systems, True, seed)
        assert flip in (0, 1) and len(queue) == n_ids * len(list(combinations(systems, 2)))
        for x, y in combinations(systems, 2):
            shown_first = [q["system_a"] == x for q in queue if {q["system_a"], q["system_b"]} == {x, y}]
            assert len(shown_first) == n_ids and abs(2 * sum(shown_first) - n_ids) <= 1


def test_per_rater_spreads_ids_evenly():
    ids = [str(i) for i in range(10)]
    coverage: Counter = Counter()
    for _ in range(6):
        for i in choose_ids(ids, coverage, 4, seed=3):
            coverage[i] += 1
    assert sum(coverage.values()) == 24 and max(coverage.values()) - min(coverage.values()) <= 1
    assert choose_ids(ids, {}, None, 0) == ids and choose_ids(ids, {}, 50, 0) == ids


def test_store_wal_schema_revisions_and_constraints(tmp_path):
    study = open_study(tmp_path / "s.sqlite", write_pairs(tmp_path, 2), ["alice"])
    store = study.store
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    item = store.queue("alice")[0]["item"]
    store.mark_shown(item)
    good = {**{d: 4 for d in DIMENSIONS}, "harm": 0, "comment": "first"}
    assert store.save_rating("alice", item, good, "request-0001") == 1
    assert store.save_rating("alice", item, good, "request-0001") == 1  # same request: nothing new
    assert store.save_rating("alice", item, {**good, "accuracy": 2}, None) == 2
    with pytest.raises(sqlite3.IntegrityError):  # the schema refuses what validation would have refused
        store.save_rating("alice", item, {**good, "accuracy": 6}, None)
    _, _, rows = store.snapshot()
    assert [(r["revision"], r["accuracy"]) for r in rows] == [(1, 4), (2, 2)]
    assert rows[0]["shown_at"] is not None and rows[0]["rated_at"] >= rows[0]["shown_at"]
    assert rows[0]["system"] in MODELS and rows[0]["position"] == 1
    # the store keeps only token hashes
    dump = "\n".join(conn.iterdump())
    assert study.links["alice"] not in dump and token_hash(study.links["alice"]) in dump
    conn.close()


def test_store_refuses_other_files(tmp_path):
    (tmp_path / "x.sqlite").write_text("not a database")
    with pytest.raises(JudgeError, match="not a ratings store"):
        Store(tmp_path / "x.sqlite")
    with pytest.raises(JudgeError, match="no such ratings store"):
        Store(tmp_path / "missing.sqlite")


def test_reopened_study_keeps_its_design_and_links(tmp_path):
    pairs = write_pairs(tmp_path, 3)
    path = tmp_path / "s.sqlite"
    first = open_study(path, pairs, ["alice"], pairwise=False)
    first.store.close()
    with pytest.raises(JudgeError, match="--pairwise"):
        open_study(path, None, ["alice"], pairwise=True)
    with pytest.raises(JudgeError, match="--per-rater"):
        open_study(path, None, ["alice"], per_rater=1)
    (tmp_path / "other").mkdir()
    other = write_pairs(tmp_path / "other", 4)
    with pytest.raises(JudgeError, match="differ from the answers"):
        open_study(path, other, ["alice"])
    again = open_study(path, pairs, ["alice", "carol"])
    assert again.links["alice"] is None and again.links["carol"]  # alice keeps her link, carol gets one
    hashes = {r["name"]: r["token_sha256"] for r in again.store.raters()}
    assert Gate(hashes).rater_for(first.links["alice"]) == "alice"
    again.store.close()
    renewed = open_study(path, None, ["alice", "carol"], new_links=["alice"])
    hashes = {r["name"]: r["token_sha256"] for r in renewed.store.raters()}
    assert Gate(hashes).rater_for(first.links["alice"]) is None  # the old link stops working
    assert Gate(hashes).rater_for(renewed.links["alice"]) == "alice"


def test_bad_study_input(tmp_path):
    with pytest.raises(JudgeError, match="--pairs"):
        open_study(tmp_path / "s.sqlite", None, ["alice"])
    with pytest.raises(JudgeError, match="--pairwise"):
        one = write_pairs(tmp_path, 2)[:1]
        open_study(tmp_path / "s.sqlite", one, ["alice"], pairwise=True)
    assert not (tmp_path / "s.sqlite").exists()  # nothing half-made
    for text in ("", "alice,alice", "al ice", "x" * 40, "../etc"):
        with pytest.raises(JudgeError, match="--raters"):
            parse_raters(text)
    assert parse_raters(" alice, bob.b ,c_3") == ["alice", "bob.b", "c_3"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, sqlite3.OperationalError])
def test_a_store_whose_creation_stops_leaves_no_file(tmp_path, stop):
    def answers():  # a Ctrl-C (or a full disk) half way through writing the answers
        yield from paired
        raise stop("stopped while writing")

    from judge.pairs import paired_records

    paired = paired_records(write_pairs(tmp_path, 2))
    settings = {"mode": "pointwise", "per_rater": None, "with_reference": False, "seed": 0,
                "systems": list(MODELS), "ids": ["RECID-0000", "RECID-0001"], "pairs_files": [],
                "answers_sha256": ""}
    with pytest.raises(stop):
        create_store(tmp_path / "s.sqlite", settings, answers())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs_0.jsonl", "pairs_1.jsonl"]
