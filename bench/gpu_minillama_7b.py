"""Llama-2-7B shape in bfloat16 with random weights: minillama vs transformers on one GPU.

Runs `bench_minillama.py` with the 7B preset on CUDA: forward+backward tokens/s (batch 1 x 512) and
greedy decode tokens/s at batch 1 (32-token prompt, 128 new tokens), eager and with `cuda_graph=True`,
printing the ratios against transformers' LlamaForCausalLM measured in the same run. The two models
share their weights, so it needs about 45 GB of GPU memory (13.5 GB weights + 13.5 GB gradients +
activations). The target is decode >= 1.3x transformers at batch 1.

    python bench/gpu_minillama_7b.py                    # on a GPU machine
    python bench/gpu_minillama_7b.py --tiny --layers 1  # smoke test anywhere (tiny widths, CPU if no GPU)

Any other option of bench_minillama.py can be added (it overrides the defaults here), e.g. --batch 4.
"""
from __future__ import annotations

import sys


import torch

from bench.bench_minillama import main as bench_main

DEFAULTS = ["--preset", "7b", "--dtype", "bfloat16", "--cuda-graph", "--prompt-len", "32", "--new-tokens", "128",
            "--train-batch", "1", "--seq", "512", "--repeats", "3"]


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--device" not in argv:
        argv = ["--device", "cuda" if torch.cuda.is_available() else "cpu"] + argv
    device = argv[argv.index("--device") + 1]
    if device == "cpu" and "--tiny" not in argv:
        print("error: no CUDA GPU: the 7B comparison needs one (use --tiny --layers 1 for a CPU smoke test)",
              file=sys.stderr)
        raise SystemExit(1)
    if device == "cpu":
        DEFAULTS[DEFAULTS.index("--seq") + 1] = "64"
        DEFAULTS[DEFAULTS.index("--new-tokens") + 1] = "16"
    return bench_main(DEFAULTS + argv)


if __name__ == "__main__":
    main()
