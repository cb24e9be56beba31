"""Benchmark: 1,000 judgments against the loopback stand-in with 200 ms latency at concurrency 16.

The reference is the ideal bound of a client with zero overhead: requests * latency / concurrency
(1000 * 0.2 s / 16 = 12.5 s). The printed ratio is wall time / ideal (1.0 is perfect; target: wall < 20 s).
The stand-in runs in its own process (as a real server would), so it does not share the client's GIL.
The wall time covers the whole `python -m judge run` call: reading the pairs, judging, journaling
(fsync per line) and writing Table 2.

    python bench/bench_judge.py [--judgments 1000] [--latency-ms 200] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from judge.llm.cli import main as judge_main

REPO = Path(__file__).resolve().parents[1]


def write_pairs(folder: Path, n_items: int) -> list[Path]:
    """Two systems answering the same `n_items` questions (so 2 * n_items judgments)."""
    paths = []
    for model in ("baseline", "finetuned"):
        path = folder / f"{model}.jsonl"
        with open(path, "w") as f:
            for i in range(n_items):
                f.write(json.dumps({"id": str(i), "model": model, "prompt": f"Question {i}: why does my head hurt?",
                                    "reference": "Rest and fluids.", "response": f"{model} answer {i}: rest."}) + "\n")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--judgments", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-m", "judge.standin", "--port", "0", "--latency-ms",
                               str(args.latency_ms)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split(" at ")[1].split()[0]
        with tempfile.TemporaryDirectory() as tmp:
            pairs = write_pairs(Path(tmp), args.judgments // 2)
            argv = ["run", "--out", str(Path(tmp) / "out"), "--base-url", url, "--concurrency",
                    str(args.concurrency), "--no-progress"]
            for p in pairs:
                argv += ["--pairs", str(p)]
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                status = judge_main(argv)
            wall = time.perf_counter() - start
            lines = (Path(tmp) / "out" / "journal.jsonl").read_text().count("\n")
    finally:
        server.terminate()
        server.wait(timeout=10)
    ideal = args.judgments * args.latency_ms / 1000 / args.concurrency
    print(f"judge bench: {lines} judgments (exit {status}), latency {args.latency_ms:.0f} ms, "
          f"concurrency {args.concurrency}")
    print(f"wall {wall:.2f} s | ideal bound {ideal:.2f} s | ratio wall/ideal {wall / ideal:.3f} "
          f"| target wall < 20 s: {'met' if wall < 20 else 'MISSED'}")


if __name__ == "__main__":
    main()
