"""Benchmark: one LoRA-adapted 4096x4096 projection, forward + backward, ours vs PEFT, same run.

    python bench/bench_lora_layer.py [--tokens 256] [--repeats 20] [--dtype float32|bfloat16]

Prints the median time of each and the ratio ours / PEFT (< 1 means ours is faster). PEFT is a
test-only reference; without it the script says so and exits 0.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time


import torch
import torch.nn as nn

from lora import LoraConfig, apply_lora


def _time(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        model(x).float().square().mean().backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i >= 2:  # two warm-up runs
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    try:
        import peft
    except ImportError:
        print("PEFT not installed: nothing to compare against (pip install peft)")
        return 0
    dtype = getattr(torch, args.dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    base = nn.Sequential()
    base.add_module("q_proj", nn.Linear(args.dim, args.dim, bias=False, device=device, dtype=dtype))
    ours = apply_lora(copy.deepcopy(base), LoraConfig(r=8, alpha=16, dropout=0.05, target_modules=("q_proj",)))
    theirs = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                                                      target_modules=["q_proj"]))
    ours.train(), theirs.train()
    x = torch.randn(1, args.tokens, args.dim, device=device, dtype=dtype)
    t_ours, t_peft = _time(ours, x, args.repeats), _time(theirs, x, args.repeats)
    print(f"LoRALinear {args.dim}x{args.dim}, r=8, {args.tokens} tokens, {args.dtype}, {device}, fwd+bwd median:")
    print(f"  lora: {t_ours * 1e3:8.2f} ms   peft: {t_peft * 1e3:8.2f} ms   ratio lora/peft: {t_ours / t_peft:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
