"""QLoRA loading: peak host memory of `Llama.from_pretrained(..., quantize="nf4")` against a plain bf16 load of
the same >= 1 GB checkpoint, each in a fresh process; and NF4 quantise / dequantise speed against
bitsandbytes' CPU backend, measured in the same run.

The checkpoint is a random Llama in bfloat16 (Llama-2's 32000-token vocabulary, width 2048, 24 layers by
default: 2.7 GB), written by this script to a temporary folder. Peak memory is the process's VmHWM (peak
resident set) after loading; the target is NF4 peak < 0.45x the bf16 peak (whole process, Python and torch
included). Embeddings and lm_head stay 16-bit in QLoRA, so the ratio approaches 4.1/16 only as layers grow.
The speed comparison runs both libraries on one thread.

    python bench/bench_nf4_memory.py [--layers 24] [--keep DIR] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from harness import checkpoint_folder, child, proc_status_kib, save_results

from minillama import Llama


def load(mode: str, folder: str) -> dict:
    """In a fresh process: load the checkpoint in bf16 (`mode` "bf16") or straight into NF4 ("nf4")."""
    import minillama.nf4  # noqa: F401  (imported before the baseline in both modes, so both pay the same imports)

    before = proc_status_kib("VmRSS")
    start = time.perf_counter()
    model = Llama.from_pretrained(folder, dtype=torch.bfloat16, quantize=None if mode == "bf16" else "nf4")
    seconds = time.perf_counter() - start
    held = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    with torch.no_grad():  # the loaded model works
        model(torch.tensor([[1, 2, 3]])).float().sum().item()
    return {"mode": mode, "rss_before_kib": before, "peak_kib": proc_status_kib("VmHWM"), "model_bytes": held,
            "seconds": seconds}


def best_times(fns: dict, repeats: int = 7) -> dict:
    """Best wall time of each function, the functions run in turn `repeats` times (so that a busy moment of
    a shared machine hits all of them alike), after one warm-up call each."""
    for fn in fns.values():
        fn()  # warm-up (bitsandbytes compiles some kernels on first use)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def speed(shape=(4096, 4096)) -> dict:
    """Seconds to quantise / dequantise one bf16 matrix to NF4 with double quantisation: ours vs bitsandbytes."""
    import bitsandbytes.functional as bnbf

    from minillama.nf4.quantize import quantize_nf4

    w = (torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 0.02).to(torch.bfloat16)
    q = quantize_nf4(w, double_quant=True)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    r = best_times({
        "ours_quantize_s": lambda: quantize_nf4(w, double_quant=True),
        "bnb_quantize_s": lambda: bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4"),
        "ours_dequantize_s": lambda: q.dequantize(torch.bfloat16),
        "bnb_dequantize_s": lambda: bnbf.dequantize_4bit(packed, state, quant_type="nf4")})
    r.update(shape=list(shape), threads=torch.get_num_threads(),
             quantize_speedup=r["bnb_quantize_s"] / r["ours_quantize_s"],
             dequantize_speedup=r["bnb_dequantize_s"] / r["ours_dequantize_s"])
    return r


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=24, help="decoder layers (24 -> 2.7 GB in bf16)")
    p.add_argument("--keep", type=Path, default=None, help="write the checkpoint here and keep it")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    p.add_argument("--speed-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(load(*args.child)))
        return {}
    if args.speed_child:
        print(json.dumps(speed()))
        return {}

    with checkpoint_folder(args.keep, "nf4-mem-", args.layers) as folder:
        file_bytes = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        print(f"checkpoint: {folder} ({file_bytes / 1e9:.2f} GB of bf16 safetensors)")
        if file_bytes < 1e9:
            print("warning: checkpoint smaller than 1 GB; use more --layers", file=sys.stderr)
        results = {"file_bytes": file_bytes, "loads": {}}
        for mode in ("bf16", "nf4"):
            r = child(__file__, "--child", mode, str(folder))
            if r is None:
                raise SystemExit(f"error: {mode} load failed")
            results["loads"][mode] = r
            print(f"{mode:>5}: peak RSS {r['peak_kib'] / 2**20:5.2f} GiB (before loading "
                  f"{r['rss_before_kib'] / 2**20:.2f} GiB), model {r['model_bytes'] / 2**30:.2f} GiB, {r['seconds']:.1f} s")
    bf16, nf4 = results["loads"]["bf16"], results["loads"]["nf4"]
    results["peak_ratio"] = nf4["peak_kib"] / bf16["peak_kib"]
    cost = {m: r["peak_kib"] - r["rss_before_kib"] for m, r in results["loads"].items()}
    results["load_cost_ratio"] = cost["nf4"] / cost["bf16"]
    print(f"NF4 / bf16 peak RSS: {results['peak_ratio']:.3f}x (target < 0.45x); loading cost alone "
          f"(peak - RSS before): {results['load_cost_ratio']:.3f}x")
    # one thread each (OMP_NUM_THREADS=1 binds torch and bitsandbytes' OpenMP kernels alike): on a shared
    # machine, multi-threaded timings of the two swing by 5x from run to run
    s = results["speed"] = child(__file__, "--speed-child")
    if s is None:
        raise SystemExit("error: speed run failed")
    print(f"NF4 + double quant of a {s['shape'][0]}x{s['shape'][1]} bf16 matrix, {s['threads']} thread: quantise "
          f"{s['ours_quantize_s'] * 1e3:.1f} ms vs bitsandbytes {s['bnb_quantize_s'] * 1e3:.1f} ms = "
          f"{s['quantize_speedup']:.2f}x; dequantise {s['ours_dequantize_s'] * 1e3:.1f} ms vs "
          f"{s['bnb_dequantize_s'] * 1e3:.1f} ms = {s['dequantize_speedup']:.2f}x (> 1: ours faster)")
    return save_results(args.json, results)


if __name__ == "__main__":
    main()
