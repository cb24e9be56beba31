"""Track C under concurrent raters (smaller than bench/bench_human_load.py): 20 raters post at once on
loopback; every rating is stored exactly once with the values sent, and the p95 latency is reported."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from _human_util import running_study
from judge.human.export import export
from judge.rubric import DIMENSIONS

RATERS = [f"r{i:02d}" for i in range(20)]


def scores_for(rater: int, position: int) -> dict:
    return {d: 1 + (rater * 7 + position * 3 + k) % 5 for k, d in enumerate(DIMENSIONS)}


def timed_post(client, url: str, csrf: str, body: dict) -> tuple[float, int, str]:
    t = time.perf_counter()
    r = client.post(url, json=body, headers={"X-CSRF-Token": csrf})
    return time.perf_counter() - t, r.status_code, r.text


@pytest.mark.slow
def test_twenty_raters_at_once_lose_and_duplicate_nothing(tmp_path):
    with running_study(tmp_path, raters=RATERS, n=5) as study:  # 5 ids x 2 systems = 10 items per rater
        barrier = threading.Barrier(len(RATERS))

        def rater(index: int, name: str) -> list[tuple[float, int, str]]:
            """(seconds, status, body) of each of this rater's posts, all raters posting at once."""
            with httpx.Client(timeout=30) as c:
                csrf = c.get(study.url(name, "api/session")).json()["csrf"]
                queue = c.get(study.url(name, "api/queue")).json()["items"]
                barrier.wait()
                return [timed_post(c, study.url(name, "api/rating"), csrf,
                                   {"item": q["item"], "scores": scores_for(index, q["position"]),
                                    "request_id": f"{name}-{q['position']:04d}"}) for q in queue]

        with ThreadPoolExecutor(len(RATERS)) as pool:
            posts = [p for mine in pool.map(rater, range(len(RATERS)), RATERS) for p in mine]
        latencies = [seconds for seconds, _, _ in posts]
        assert [text for _, status, text in posts if status != 200] == []
        summary = export(study.store_path, tmp_path / "out", n_bootstrap=20)
    rows = [json.loads(x) for x in (tmp_path / "out" / "human_ratings.jsonl").read_text().splitlines()]
    assert summary["n_ratings"] == summary["n_revisions"] == len(rows) == 200
    assert len({(r["rater"], r["item"]) for r in rows}) == 200
    for r in rows:
        assert {d: r[d] for d in DIMENSIONS} == scores_for(RATERS.index(r["rater"]), r["position"])
    print(f"\n200 concurrent ratings: POST p95 {np.percentile(latencies, 95) * 1000:.1f} ms")
