"""NF4 quantisation error, measured: Llama-shaped random bf16 weights (normal, std 0.02 = Llama's
initializer_range) quantised with and without double quantisation, against the bf16 originals; bitsandbytes'
FP4 (same block size) on the same weights for comparison. Used for docs/qlora.md.

    python bench/bench_nf4_error.py [--json FILE]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from harness import save_results

from minillama.nf4.quantize import quantize_nf4

SHAPES = [(4096, 4096), (11008, 4096)]  # Llama-2-7B: q/k/v/o_proj and gate/up_proj ([out, in]; down_proj is 4096 x 11008)


def errors(w: torch.Tensor, approx: torch.Tensor) -> dict:
    """Mean and max absolute error and relative Frobenius error ||W - Q(W)||_F / ||W||_F, in float64."""
    w, d = w.double(), approx.double() - w.double()
    return {"mean_abs": d.abs().mean().item(), "max_abs": d.abs().max().item(),
            "rel_frobenius": (d.norm() / w.norm()).item()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--std", type=float, default=0.02)
    args = p.parse_args(argv)
    results = {}
    for shape in SHAPES:
        g = torch.Generator().manual_seed(0)
        w = (torch.randn(shape, generator=g) * args.std).to(torch.bfloat16)
        row = {}
        for dq in (False, True):
            q = quantize_nf4(w, double_quant=dq)
            row[f"nf4{'_dq' if dq else ''}"] = {**errors(w, q.dequantize(torch.bfloat16)),
                                                 "bits_per_value": 8 * q.nbytes / w.numel()}
        try:
            import bitsandbytes.functional as bnbf
            packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="fp4")
            row["bnb_fp4"] = errors(w, bnbf.dequantize_4bit(packed, state, quant_type="fp4"))
        except ImportError:
            pass
        results["x".join(map(str, shape))] = row
        for name, e in row.items():
            print(f"{shape[0]:>5} x {shape[1]:<5} {name:<8} mean |err| {e['mean_abs']:.3e}  max |err| {e['max_abs']:.3e}"
                  f"  rel. Frobenius {e['rel_frobenius']:.4f}" + (f"  {e['bits_per_value']:.3f} bits/value"
                                                                   if "bits_per_value" in e else ""))
    save_results(args.json, results)
    return results


if __name__ == "__main__":
    main()
