"""The README's first command, timed on an idle machine and beside two busy processes, in one run.

    python bench/bench_demo.py            # the full demo (about 2 x 2 minutes, plus the reference run)
    python bench/bench_demo.py --quick    # a smaller demo (fewer records and steps), same comparisons

Each run is `scripts/reproduce.py --judge-standin` into a fresh folder with a fresh cache (so the demo base
is built, not reused). Three runs:

1. idle: nothing else running;
2. loaded: two processes keep two cores busy (pure Python loops) the whole time;
3. loaded, torch's default threads (`OMP_NUM_THREADS` = the core count): the reference policy.

Printed: each wall time, loaded / idle (the target is at most 2x) and reference / ours under load. The
numbers are ratios measured in the same run; absolute times depend on the machine and its neighbours.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUSY = "import time\nend = time.time() + 3600\nwhile time.time() < end:\n    pass\n"


def demo(folder: Path, quick: bool, env_extra: dict) -> float:
    """Wall seconds of one demo run into `folder` (fresh cache)."""
    cfg = {"preset": "demo"}
    if quick:
        cfg["train_args"] = ["--demo-records", "240", "--demo-pretrain-steps", "120", "--max-steps", "60"]
        cfg["generation"] = {"max_new_tokens": 48, "batch_size": 16, "limit": 24}
    (folder / "c.json").write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENAI_BASE_URL")}
    env.update(MEDLORA_CACHE=str(folder / "cache"), **env_extra)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "reproduce.py"), "--config", str(folder / "c.json"),
                           "--run-dir", str(folder / "run"), "--judge-standin"], env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: demo failed: {proc.stderr.strip().splitlines()[-1:]}")
    return seconds


def with_load(n: int):
    """Start `n` busy processes; returns a function that stops them."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n)]

    def stop():
        for p in procs:
            p.kill()
            p.wait()
    return stop


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smaller demo (same comparisons)")
    p.add_argument("--busy", type=int, default=2, help="busy background processes in the loaded runs")
    args = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    results = {"cores": cores, "busy_processes": args.busy, "quick": args.quick}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("idle", 0, {}), ("loaded", args.busy, {}), ("loaded_torch_default", args.busy,
                                                           {"OMP_NUM_THREADS": str(cores)})]
        for name, busy, env in runs:
            folder = Path(tmp) / name
            folder.mkdir()
            stop = with_load(busy) if busy else (lambda: None)
            try:
                results[name] = round(demo(folder, args.quick, env), 1)
            finally:
                stop()
            print(f"{name}: {results[name]:.1f} s", file=sys.stderr, flush=True)
    results["loaded_over_idle"] = round(results["loaded"] / results["idle"], 2)
    results["torch_default_over_ours_loaded"] = round(results["loaded_torch_default"] / results["loaded"], 2)
    print(json.dumps(results, indent=1))
    print(f"demo on {cores} cores: idle {results['idle']:.0f} s; beside {args.busy} busy processes "
          f"{results['loaded']:.0f} s = {results['loaded_over_idle']:.2f}x idle (target <= 2x); torch's default "
          f"threads under the same load take {results['torch_default_over_ours_loaded']:.2f}x ours")
    return results


if __name__ == "__main__":
    main()
