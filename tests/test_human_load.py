"""Track C under concurrent raters (smaller than bench/bench_human_load.py): 20 raters post at once on
loopback; every rating is stored exactly once with the values sent, and the p95 latency is reported."""
from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest

from _human_util import running_study
from judge.human.export import export
from judge.rubric import DIMENSIONS

RATERS = [f"r{i:02d}" for i in range(20)]


def scores_for(rater: int, position: int) -> dict:
    return {d: 1 + (rater * 7 + position * 3 + k) % 5 for k, d in enumerate(DIMENSIONS)}


@pytest.mark.slow
def test_twenty_raters_at_once_lose_and_duplicate_nothing(tmp_path):
    with running_study(tmp_path, raters=RATERS, n=5) as study:  # 5 ids x 2 systems = 10 items per rater
        latencies, errors, lock = [], [], threading.Lock()
        barrier = threading.Barrier(len(RATERS))

        def rater(index: int, name: str) -> None:
            mine = []
            with httpx.Client(timeout=30) as c:
                csrf = c.get(study.url(name, "api/session")).json()["csrf"]
                queue = c.get(study.url(name, "api/queue")).json()["items"]
                barrier.wait()
                for q in queue:
                    body = {"item": q["item"], "scores": scores_for(index, q["position"]),
                            "request_id": f"{name}-{q['position']:04d}"}
                    t = time.perf_counter()
                    r = c.post(study.url(name, "api/rating"), json=body, headers={"X-CSRF-Token": csrf})
                    mine.append(time.perf_counter() - t)
                    if r.status_code != 200:
                        errors.append(r.text)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=rater, args=(i, n)) for i, n in enumerate(RATERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        summary = export(study.store_path, tmp_path / "out", n_bootstrap=20)
    rows = [json.loads(x) for x in (tmp_path / "out" / "human_ratings.jsonl").read_text().splitlines()]
    assert summary["n_ratings"] == summary["n_revisions"] == len(rows) == 200
    assert len({(r["rater"], r["item"]) for r in rows}) == 200
    for r in rows:
        assert {d: r[d] for d in DIMENSIONS} == scores_for(RATERS.index(r["rater"]), r["position"])
    print(f"\n200 concurrent ratings: POST p95 {np.percentile(latencies, 95) * 1000:.1f} ms")
