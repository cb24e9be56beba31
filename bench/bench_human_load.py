"""Benchmark: 20 raters rating at once on loopback, 1,000 ratings in total, none lost or duplicated.

The Track C server runs as a user starts it (`python -m judge.human serve`, its own process); 20 client
threads, one per rater, each open their session and queue, then for each of their 50 items fetch it
and post a rating (each POST is one SQLite transaction, fsync'd). Latency is measured per POST.

References measured in the same run:
* a trivial `ThreadingHTTPServer` in its own process that answers every request with a fixed JSON body
  (same HTTP/1.1 keep-alive, same client, same request sequence): the cost of HTTP alone;
* the same 1,000 rating writes straight into a Store from 20 threads, without HTTP: the cost of SQLite.

Afterwards the store is exported and checked: exactly one final rating per (rater, item), with the
values that were sent, and no extra revision.

    python bench/bench_human_load.py [--raters 20] [--ids 25] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np

from judge.human.export import export
from judge.human.study import open_study
from judge.rubric import DIMENSIONS

REPO = Path(__file__).resolve().parents[1]


def scores_for(rater: int, position: int) -> dict:
    """A distinct, checkable rating for each (rater, position)."""
    return {d: 1 + (rater * 7 + position * 3 + k) % 5 for k, d in enumerate(DIMENSIONS)}


def write_pairs(folder: Path, n_ids: int) -> list[str]:
    paths = []
    for model in ("bench-base", "bench-tuned"):
        path = folder / f"{model}.jsonl"
        path.write_text("".join(json.dumps({"id": f"q{i}", "model": model, "prompt": f"Question {i}: my head hurts.",
                                            "reference": "Rest.", "response": f"Answer {i}: rest and fluids. " * 20})
                                + "\n" for i in range(n_ids)))
        paths.append(str(path))
    return paths


def rate_all(links: dict[str, str], static: bool) -> tuple[float, list[float]]:
    """Every rater rates their whole queue concurrently; returns (wall seconds, POST latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(links) + 1)
    errors: list[str] = []

    def rater(index: int, base: str) -> None:
        mine = []
        with httpx.Client(timeout=60) as c:
            session = c.get(base + "api/session").json()
            queue = c.get(base + "api/queue").json()["items"] if not static else \
                [{"item": f"i{index}-{p}", "position": p} for p in range(1, 51)]
            barrier.wait()
            for q in queue:
                c.get(base + f"api/item/{q['item']}")
                body = {"item": q["item"], "scores": scores_for(index, q["position"]), "harm": False}
                t = time.perf_counter()
                r = c.post(base + "api/rating", json=body, headers={"X-CSRF-Token": session.get("csrf", "")})
                mine.append(time.perf_counter() - t)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=rater, args=(i, base)) for i, base in enumerate(links.values())]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"requests failed: {errors[:3]}")
    return time.perf_counter() - start, latencies


class _Static(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = json.dumps({"saved": True, "revision": 1, "rated": 1, "total": 50, "next": 2, "csrf": "x"}).encode()

    def setup(self) -> None:
        super().setup()
        import socket
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer  # noqa: N815

    def log_message(self, *args) -> None:
        pass


def serve_static() -> None:
    """`--serve-static`: the reference server, in its own process; prints its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Static)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


def sqlite_only(folder: Path, pairs: list[str], n_raters: int) -> list[float]:
    """The same writes straight into a Store, 20 threads, no HTTP: per-write latencies."""
    names = [f"r{i:02d}" for i in range(n_raters)]
    study = open_study(folder / "direct.sqlite", pairs, names)
    latencies, lock = [], threading.Lock()

    def write(i: int, name: str) -> None:
        mine = []
        for q in study.store.queue(name):
            t = time.perf_counter()
            study.store.save_rating(name, q["item"], {**scores_for(i, q["position"]), "harm": 0, "comment": ""}, None)
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=write, args=(i, n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    study.store.close()
    return latencies


def verify(store: Path, out: Path, n_raters: int, expected: int) -> None:
    """Exactly one final rating and one revision per (rater, item), with the values sent."""
    summary = export(store, out, n_bootstrap=100)
    rows = [json.loads(x) for x in (out / "human_ratings.jsonl").read_text().splitlines()]
    keys = {(r["rater"], r["item"]) for r in rows}
    assert summary["n_ratings"] == expected == len(rows) == len(keys), "ratings lost or duplicated"
    assert summary["n_revisions"] == expected, "a rating was stored twice"
    for r in rows:
        assert {d: r[d] for d in DIMENSIONS} == scores_for(int(r["rater"][1:]), r["position"]), r


def pct(values, q) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def run_server(folder: Path, pairs: list[str], names: list[str], static_port: int) -> tuple:
    """One measured round: a fresh store served by `python -m judge.human serve`, then the static server."""
    store = folder / "ratings.sqlite"
    serve = subprocess.Popen([sys.executable, "-m", "judge.human", "serve", "--store", str(store), "--port", "0",
                              "--raters", ",".join(names), "--pairs", pairs[0], "--pairs", pairs[1]],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        links = {}
        for line in serve.stdout:
            m = re.match(r"\s+(\S+): (http://\S+/)", line)
            if m:
                links[m[1]] = m[2]
            if line.startswith("Send each rater"):
                break
        threading.Thread(target=serve.stdout.read, daemon=True).start()  # keep its log pipe drained
        ours = rate_all(links, static=False)
    finally:
        serve.terminate()
        serve.wait(10)
    reference = rate_all({n: f"http://127.0.0.1:{static_port}/r/{n}/" for n in names}, static=True)
    return store, ours, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raters", type=int, default=20)
    parser.add_argument("--ids", type=int, default=25, help="question ids; 2 systems, so 2 x ids items per rater")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (medians are reported)")
    parser.add_argument("--serve-static", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_static:
        return serve_static()
    names = [f"r{i:02d}" for i in range(args.raters)]
    expected = args.raters * args.ids * 2
    static = subprocess.Popen([sys.executable, __file__, "--serve-static"], stdout=subprocess.PIPE, text=True)
    ours, refs = [], []
    try:
        port = int(static.stdout.readline())
        for k in range(args.rounds):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                pairs = write_pairs(folder, args.ids)
                store, mine, ref = run_server(folder, pairs, names, port)
                verify(store, folder / "out", args.raters, expected)
                ours.append(mine)
                refs.append(ref)
                if k == 0:
                    lat_sql = sqlite_only(folder, pairs, args.raters)
    finally:
        static.terminate()
        static.wait(10)
    med = lambda runs, f: float(np.median([f(r) for r in runs]))  # noqa: E731
    p95, p95_ref = med(ours, lambda r: pct(r[1], 95)), med(refs, lambda r: pct(r[1], 95))
    rate, rate_ref = med(ours, lambda r: expected / r[0]), med(refs, lambda r: expected / r[0])
    print(f"{args.raters} raters at once, {expected} ratings per round, {args.rounds} rounds: every rating stored "
          f"exactly once with the values sent (export checked each round); medians over rounds")
    print(f"Track C server : {rate:7.1f} ratings/s, POST p50 {med(ours, lambda r: pct(r[1], 50)):6.2f} ms, "
          f"p95 {p95:6.2f} ms, p99 {med(ours, lambda r: pct(r[1], 99)):6.2f} ms")
    print(f"static server  : {rate_ref:7.1f} requests/s, POST p50 "
          f"{med(refs, lambda r: pct(r[1], 50)):6.2f} ms, p95 {p95_ref:6.2f} ms  (HTTP only, same client)")
    print(f"SQLite alone   : write p50 {pct(lat_sql, 50):6.2f} ms, p95 {pct(lat_sql, 95):6.2f} ms  "
          f"(the same {expected} transactions from {args.raters} threads, no HTTP)")
    print(f"ratio vs static server: p95 {p95 / p95_ref:.2f}x, throughput {rate / rate_ref:.2f}x; "
          f"p95 vs SQLite alone {p95 / pct(lat_sql, 95):.2f}x")


if __name__ == "__main__":
    main()
