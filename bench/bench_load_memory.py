"""Peak host memory while loading a bf16 checkpoint: minillama vs transformers, in fresh processes.

Writes a random Llama checkpoint of at least 1 GB in bfloat16 to a temporary folder (default ~1.5 GB),
then loads it in a fresh subprocess per loader and reports the process's peak resident set size (RSS,
VmHWM) against the size of the weights file. Two numbers per loader:

  * peak RSS / file size                       (the whole process, Python + torch included), and
  * (peak RSS - RSS before loading) / file size (what loading itself costs; the target is < 1.3x).

It also reports RSS after one forward pass: transformers 5 maps the safetensors file lazily, so its
weights only become resident when first used; minillama reads them into memory during the load.

    python bench/bench_load_memory.py [--layers 12] [--keep DIR] [--skip-transformers]
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


def rss_now_kib() -> int:
    return proc_status_kib("VmRSS")


def measure(loader: str, folder: str) -> dict:
    """Child process: import the loader, note RSS, load the checkpoint, report peak RSS (KiB)."""
    if loader == "transformers":
        import transformers

        def load():
            return transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    else:
        def load():
            return Llama.from_pretrained(folder, dtype=torch.bfloat16)
    before = rss_now_kib()
    peak_before = proc_status_kib("VmHWM")
    start = time.perf_counter()
    model = load()
    seconds = time.perf_counter() - start
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    peak = proc_status_kib("VmHWM")
    rss_loaded = rss_now_kib()
    with torch.no_grad():  # touch every weight once: lazily mapped weights become resident here
        out = model(torch.tensor([[1, 2, 3]]))
        (out.logits if hasattr(out, "logits") else out).sum().item()
    return {"loader": loader, "rss_before_kib": before, "peak_before_kib": peak_before, "peak_kib": peak,
            "rss_loaded_kib": rss_loaded, "rss_after_forward_kib": rss_now_kib(),
            "peak_after_forward_kib": proc_status_kib("VmHWM"), "param_bytes": n_bytes, "seconds": seconds}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=12, help="decoder layers (12 -> about 1.5 GB in bf16)")
    p.add_argument("--keep", type=Path, default=None, help="write the checkpoint here and keep it")
    p.add_argument("--skip-transformers", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", nargs=2, metavar=("LOADER", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*args.child)))
        return {}

    with checkpoint_folder(args.keep, "minillama-mem-", args.layers) as folder:
        files = sorted(folder.glob("*.safetensors"))
        file_bytes = sum(f.stat().st_size for f in files)
        print(f"checkpoint: {folder} ({file_bytes / 1e9:.2f} GB in {len(files)} safetensors file(s), bf16)")
        if file_bytes < 1e9:
            print("warning: checkpoint smaller than 1 GB; use more --layers", file=sys.stderr)
        results = {"file_bytes": file_bytes, "loaders": {}}
        loaders = ["minillama"] + ([] if args.skip_transformers else ["transformers"])
        for loader in loaders:
            r = child(__file__, "--child", loader, str(folder))
            if r is None:
                continue
            total = r["peak_kib"] * 1024 / file_bytes
            extra = (r["peak_kib"] - r["rss_before_kib"]) * 1024 / file_bytes
            r.update(peak_over_file=total, load_cost_over_file=extra)
            results["loaders"][loader] = r
            print(f"{loader:>12}: peak RSS {r['peak_kib'] / 2**20:6.2f} GiB = {total:.2f}x file; "
                  f"RSS before loading {r['rss_before_kib'] / 2**20:5.2f} GiB; loading cost "
                  f"{extra:.2f}x file (target < 1.3x); {r['seconds']:.1f}s; after one forward: RSS "
                  f"{r['rss_after_forward_kib'] / 2**20:.2f} GiB, peak {r['peak_after_forward_kib'] / 2**20:.2f} GiB")
        if len(results["loaders"]) == 2:
            a, b = (results["loaders"][k]["peak_after_forward_kib"] for k in ("minillama", "transformers"))
            print(f"peak RSS after the first forward, minillama / transformers: {a / b:.2f}x (lower is better; "
                  "transformers' lower load-time peak only defers reading the weights)")
    return save_results(args.json, results)


if __name__ == "__main__":
    main()
