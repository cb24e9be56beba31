"""The Llama-2-7B training benchmark on one GPU: our LoRA step vs transformers + peft, bf16.

Random weights (meta-device init, then N(0, 0.02) on the GPU: no download, no licence needed), the
Llama-2-7B shape, LoRA r=8 alpha=16 dropout 0.05 on q,k,v,o, real GenMedGPT-5k token lengths
(alpaca template, Llama-2 tokenizer, cutoff_len 256), batch 1 x 256 (the paper's setting) and 8 x 256.
Targets from issue 4: >= 2.5x transformers + peft tokens/s at batch 1, >= 1.5x at batch 8, with no
more peak memory.

    python bench/gpu_train_7b.py                     # on a GPU (about 40 GB at batch 8)
    python bench/gpu_train_7b.py --compile           # both sides torch.compile'd
    python bench/gpu_train_7b.py --tiny              # CPU smoke run of the same code path, tiny shape

Results go to bench/results/bench_train_7b.json unless --out names another file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


import bench_train

RESULTS = Path(__file__).resolve().parent / "results"  # kept out of the cwd (the repo root)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny shape, one timed step")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default=str(RESULTS / "bench_train_7b.json"),
                   help="results JSON (default: bench/results/bench_train_7b.json)")
    args = p.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        common = ["--shape", "tiny", "--device", "cpu", "--steps", "1", "--warmup", "1", "--repeats", "1"]
    else:
        common = ["--shape", "7b", "--device", "cuda", "--steps", str(args.steps), "--warmup", "5", "--repeats", "2"]
    rows = bench_train.main(common + ["--batches", "1x256,8x256", "--out", args.out] + ["--compile"] * args.compile)
    print(f"results written to {args.out}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
