"""The README's first command, timed on an idle machine and beside two busy processes, in one run.

    python bench/bench_demo.py            # the full demo (about 2 x 2 minutes, plus the reference run)
    python bench/bench_demo.py --quick    # a smaller demo (fewer records and steps), same comparisons

Each run is `scripts/reproduce.py --judge-standin` into a fresh folder. Five runs:

1. idle: nothing else running, a fresh cache (the demo base is built: a new user's first demo);
2. loaded: two processes keep two cores busy (pure Python loops) the whole time, a fresh cache;
3. loaded_cached: the same load, the cache of run 1 (the base is reused: a second demo on this machine);
4. loaded_torch_default: the same load, a fresh cache, torch's defaults (one thread per core, OpenMP's
   spinning wait, `GOMP_SPINCOUNT` at libgomp's default 300000 so that the project's policy keeps out);
5. idle_float32: idle, a fresh cache, the demo in float32 instead of its float64 (what the figures that are
   the same on every CPU cost: float64 / float32).

Printed: each wall time, loaded / idle (the target is at most 2x), loaded_cached / idle and the reference /
ours under load. The numbers are ratios measured in the same run; absolute times depend on the machine
and its neighbours.
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


def demo(folder: Path, quick: bool, env_extra: dict, cache: Path, dtype: str = "float64") -> float:
    """Wall seconds of one demo run into `folder` with the cache folder `cache`."""
    cfg = {"preset": "demo", "train_args": ["--dtype", dtype], "generation": {"dtype": dtype}}
    if quick:
        cfg["train_args"] += ["--demo-records", "240", "--demo-pretrain-steps", "120", "--max-steps", "60"]
        cfg["generation"].update(max_new_tokens=48, batch_size=16, limit=24)
    (folder / "c.json").write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENAI_BASE_URL")}
    env.update(MEDLORA_CACHE=str(cache), **env_extra)
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
        torch_default = {"OMP_NUM_THREADS": str(cores), "GOMP_SPINCOUNT": "300000"}
        runs = [("idle", 0, {}, "idle", "float64"), ("loaded", args.busy, {}, "loaded", "float64"),
                ("loaded_cached", args.busy, {}, "idle", "float64"),
                ("loaded_torch_default", args.busy, torch_default, "loaded_torch_default", "float64"),
                ("idle_float32", 0, {}, "idle_float32", "float32")]
        for name, busy, env, cache, dtype in runs:
            folder = Path(tmp) / name
            folder.mkdir()
            stop = with_load(busy) if busy else (lambda: None)
            try:
                results[name] = round(demo(folder, args.quick, env, Path(tmp) / cache / "cache", dtype), 1)
            finally:
                stop()
            print(f"{name}: {results[name]:.1f} s", file=sys.stderr, flush=True)
    results["loaded_over_idle"] = round(results["loaded"] / results["idle"], 2)
    results["loaded_cached_over_idle"] = round(results["loaded_cached"] / results["idle"], 2)
    results["torch_default_over_ours_loaded"] = round(results["loaded_torch_default"] / results["loaded"], 2)
    results["float64_over_float32_idle"] = round(results["idle"] / results["idle_float32"], 2)
    print(json.dumps(results, indent=1))
    print(f"demo on {cores} cores: idle {results['idle']:.0f} s; beside {args.busy} busy processes "
          f"{results['loaded']:.0f} s = {results['loaded_over_idle']:.2f}x idle (target <= 2x), "
          f"{results['loaded_cached']:.0f} s = {results['loaded_cached_over_idle']:.2f}x with the demo base cached; "
          f"torch's defaults under the same load take {results['torch_default_over_ours_loaded']:.2f}x ours; the "
          f"demo's float64 takes {results['float64_over_float32_idle']:.2f}x float32's time (idle)")
    return results


if __name__ == "__main__":
    main()
