"""Batched greedy generation on a real checkpoint: minillama's `generate` (KV cache, stop at EOS) vs
transformers' `generate`, same weights (a HF folder, e.g. SmolLM2-135M-Instruct), same prompts.

The prompts are held-out GenMedGPT-5k questions in the alpaca template (tokenised by the folder's own
tokenizer through transformers' AutoTokenizer), sorted longest first as the pipeline plans its batches
(`--no-longest-first`: in file order), left-padded in batches of `--batch`; each side decodes
greedily up to `--new-tokens` tokens and stops a row at EOS. Each side runs in its own subprocess, the
sides alternate over `--repeats` and the best of each is kept. Tokens/s counts generated tokens (up to
and including each row's EOS) per second of `generate`; the outputs of both sides are compared token
for token (greedy on the same weights: they should be the same).

The ceiling (the decoding roofline): a decoding step reads every matmul weight once (q,k,v,o,gate,up,down and
lm_head; float32) for the `--batch` tokens it makes, and multiplies each by each token (2 FLOPs per weight and
token), so no implementation makes more than min(batch x bandwidth / weight bytes, matmul peak / (2 x weights))
tokens per second. Bandwidth is this machine's memory read rate (the best of summing a 1 GiB float32 tensor) and
the matmul peak a 2048^3 float32 matmul (`bench_train.matmul_peak`), both timed in the same run on the same
threads. Each side's tokens/s is printed as a share of the ceiling (a lower bound of the decoding steps' share:
the prefill and the KV-cache reads are in the time, not the bytes). When transformers already reaches more than
half of it, nothing can be 2x faster at that batch and dtype.

    python bench/bench_generate_real.py --model /work/ref/smollm2-hf --threads 1
    python bench/bench_generate_real.py --model /work/ref/smollm2-hf --profile   # where ours spends its time
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench_train import SHARED, AutoTok, matmul_peak  # bench/ is the script's folder, first on its path
from harness import add_run_flags, save_results


def prompts(model: str, n: int, data_file: Path) -> list[list[int]]:
    """The alpaca prompts of the last `n` GenMedGPT-5k records (far from the ones training benches use)."""
    from lora.finetune.records import load_records
    from minillama.templates import prompt_ids

    tok, (records, _) = AutoTok(model), load_records(data_file)
    recs = list(records.values())[-n:]
    return [prompt_ids(r, tok, "alpaca") for r in recs]


def batches(ps: list[list[int]], size: int, longest_first: bool) -> list[list[list[int]]]:
    """The prompts cut into batches of `size`; with `longest_first`, sorted by length first (longest first,
    stable), as the pipeline plans its batches (`pipeline.generation.plan_batches`), so a batch pads little."""
    if longest_first:
        ps = sorted(ps, key=len, reverse=True)
    return [ps[i:i + size] for i in range(0, len(ps), size)]


def worker(args) -> dict:
    """One side: generate every batch; prints a JSON line with the outputs and the time."""
    from minillama.generate import left_pad

    torch.manual_seed(0)
    ps = prompts(args.model, args.batch * args.batches, Path(args.data))
    tok = AutoTok(args.model)
    eos = None if args.ignore_eos else tok.eos_id
    if args.worker == "ours":
        from minillama import Llama
        model = Llama.from_pretrained(args.model, dtype=torch.float32).eval()

        def run(ids, mask):
            return model.generate(ids, args.new_tokens, eos_id=eos, attention_mask=mask, pad_id=tok.eos_id)
    else:
        import transformers
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()

        def run(ids, mask):
            with torch.no_grad():
                return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                                      do_sample=False, eos_token_id=eos, pad_token_id=tok.eos_id,
                                      temperature=None, top_p=None, top_k=None)
    outputs, seconds, tokens = [], 0.0, 0
    planned = batches(ps, args.batch, args.longest_first)
    for i in range(-1, args.batches):  # batch -1: warm-up, untimed
        ids, mask = left_pad(planned[max(i, 0)], pad_id=tok.eos_id)
        t0 = time.perf_counter()
        out = run(ids, mask)
        dt = time.perf_counter() - t0
        if i < 0:
            continue
        seconds += dt
        for row in out[:, ids.shape[1]:].tolist():
            new = row[:row.index(eos) + 1] if eos in row else row
            outputs.append(new)
            tokens += len(new)
    return {"side": args.worker, "tokens_per_s": tokens / seconds, "tokens": tokens, "seconds": seconds,
            "outputs": outputs}


def weight_bytes(model: str) -> int:
    """Bytes of the float32 matmul weights one decoding step reads (q,k,v,o,gate,up,down per layer and lm_head)."""
    c = json.loads((Path(model) / "config.json").read_text())
    d, heads, kv, layers = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["num_hidden_layers"]
    hd = c.get("head_dim") or d // heads
    return 4 * (layers * (2 * d * heads * hd + 2 * d * kv * hd + 3 * d * c["intermediate_size"]) + d * c["vocab_size"])


def read_bandwidth(gib: float = 1.0, seconds: float = 3.0) -> float:
    """Bytes/s of reading a `gib`-GiB float32 tensor (a sum) on this process's threads: the best of repeated runs."""
    x = torch.ones(int(gib * 2**30) // 4)
    best, runs, t_end = 0.0, 0, time.perf_counter() + seconds
    x.sum()
    while runs < 5 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        x.sum()
        best, runs = max(best, x.nbytes / (time.perf_counter() - t0)), runs + 1
    return best


def profile(args) -> None:
    """Where ours spends its time: torch.profiler's table over one batch."""
    from torch.profiler import profile as torch_profile
    from minillama import Llama
    from minillama.generate import left_pad

    tok = AutoTok(args.model)
    model = Llama.from_pretrained(args.model, dtype=torch.float32).eval()
    ids, mask = left_pad(prompts(args.model, args.batch, Path(args.data)), pad_id=tok.eos_id)
    model.generate(ids, 4, eos_id=tok.eos_id, attention_mask=mask, pad_id=tok.eos_id)
    with torch_profile() as prof:
        model.generate(ids, args.new_tokens, eos_id=tok.eos_id, attention_mask=mask, pad_id=tok.eos_id)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a HF Llama folder (e.g. /work/ref/smollm2-hf)")
    p.add_argument("--data", default=str(SHARED / "genmedgpt-5k.json"), help="GenMedGPT-5k JSON")
    p.add_argument("--batch", type=int, default=4, help="prompts per generate call")
    p.add_argument("--batches", type=int, default=2, help="timed generate calls per side")
    p.add_argument("--new-tokens", type=int, default=64, help="max_new_tokens")
    p.add_argument("--ignore-eos", action="store_true",
                   help="every row decodes --new-tokens tokens (the cost of a decoding step, no early stops)")
    p.add_argument("--longest-first", action=argparse.BooleanOptionalAction, default=True,
                   help="sort the prompts by length before batching, as the pipeline does (default: on)")
    add_run_flags(p, 2, "fresh processes per side; the best is reported", 0, "torch threads (0 = default)")
    p.add_argument("--profile", action="store_true", help="profile ours instead of comparing")
    p.add_argument("--worker", choices=["ours", "hf"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for flag, path in (("--model", Path(args.model) / "config.json"), ("--data", Path(args.data))):
        if not path.is_file():
            sys.exit(f"error: {flag}: {path} not found")
    if args.profile:
        profile(args)
        return {}
    if args.worker:
        print(json.dumps(worker(args)))
        return {}
    cmd = [sys.executable, __file__, "--model", args.model, "--data", args.data, "--batch", str(args.batch),
           "--batches", str(args.batches), "--new-tokens", str(args.new_tokens), "--threads", str(args.threads),
           "--longest-first" if args.longest_first else "--no-longest-first"] + ["--ignore-eos"] * args.ignore_eos
    res: dict[str, dict] = {}
    for _ in range(args.repeats):
        for side in ("ours", "hf"):
            proc = subprocess.run(cmd + ["--worker", side], capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"error: {side} worker failed: {proc.stderr.strip().splitlines()[-1:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            if side not in res or got["tokens_per_s"] > res[side]["tokens_per_s"]:
                res[side] = got
    bandwidth, peak = read_bandwidth(), matmul_peak(torch.float32)  # after the workers: no model is held meanwhile
    weights = weight_bytes(args.model)
    ceiling = min(args.batch * bandwidth / weights, peak / (2 * weights / 4))  # memory-bound, compute-bound
    same = sum(a == b for a, b in zip(res["ours"]["outputs"], res["hf"]["outputs"])) / len(res["ours"]["outputs"])
    row = {"model": Path(args.model).name, "batch": args.batch, "new_tokens": args.new_tokens,
           "longest_first": args.longest_first, "ignore_eos": args.ignore_eos,
           "threads": torch.get_num_threads(), "ours_tokens_per_s": res["ours"]["tokens_per_s"],
           "hf_tokens_per_s": res["hf"]["tokens_per_s"],
           "speed_ratio": res["ours"]["tokens_per_s"] / res["hf"]["tokens_per_s"],
           "tokens": res["ours"]["tokens"], "same_outputs_fraction": same, "read_bytes_per_s": bandwidth,
           "matmul_peak_flops_per_s": peak, "weight_bytes": weights, "ceiling_tokens_per_s": ceiling}
    print(f"{row['model']} greedy generation, batch {args.batch}, {'exactly' if args.ignore_eos else 'up to'} "
          f"{args.new_tokens} new tokens: ours "
          f"{row['ours_tokens_per_s']:.1f} tok/s, transformers {row['hf_tokens_per_s']:.1f} tok/s, ratio "
          f"{row['speed_ratio']:.2f}x; identical outputs for {same:.0%} of the {len(res['ours']['outputs'])} prompts",
          flush=True)
    print(f"  ceiling {ceiling:.1f} tok/s = min(batch {args.batch} x {bandwidth / 1e9:.1f} GB/s read / {weights / 1e6:.0f} "
          f"MB of weights, {peak / 1e9:.1f} GFLOP/s matmul peak / {2 * weights / 4 / 1e6:.0f} MFLOP a token): ours "
          f"{row['ours_tokens_per_s'] / ceiling:.0%} of it, transformers {row['hf_tokens_per_s'] / ceiling:.0%}",
          flush=True)
    return save_results(args.out, row, indent=1)


if __name__ == "__main__":
    main()
