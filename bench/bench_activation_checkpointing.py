"""Peak memory of one LoRA training step with and without activation checkpointing, and their ratio.

Each setting runs in a fresh subprocess (so one measurement cannot reuse what the other's allocator kept): a random
Llama with LoRA on every projection, one forward + backward of the next-token loss on a batch, and

  * on CUDA: `torch.cuda.max_memory_allocated()` minus what was allocated before the step;
  * on the CPU: the process's peak resident set (VmHWM, reset by /proc/self/clear_refs) minus its resident set
    (VmRSS) before the step, after glibc's `malloc_trim` handed back what the warm-up step freed. The children
    run with MALLOC_MMAP_THRESHOLD_=65536, so that every tensor above 64 KiB is its own mapping, unmapped when freed:
    glibc's default threshold grows with what was freed, and freed heap memory then stays resident and counts as
    peak (the layers' share would seem not to shrink).

What checkpointing saves is the activations (lora/memory.py: every layer keeps only its input, one layer is
recomputed at a time), so the step's peak should fall roughly by L-fold on the layers' share. The gradients are
the same (tests/test_train_activation_checkpointing.py proves it in float64).

    python bench/bench_activation_checkpointing.py [--device cpu|cuda] [--layers 6] [--batch 2] [--seq 512]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def proc_status_kib(field: str) -> int:
    """A memory field of /proc/self/status in KiB (VmRSS now, VmHWM the peak); Linux only."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def measure(args: argparse.Namespace, checkpointing: bool) -> dict:
    """Child process: build the model, then one training step; the step's peak memory in bytes."""
    import torch

    from lora import LoraConfig, apply_lora
    from minillama import Llama, LlamaConfig

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3,
                         num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                         num_key_value_heads=args.hidden // 64, max_position_embeddings=args.seq)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = Llama(config).to(device=device, dtype=dtype)
    apply_lora(model, LoraConfig(r=8, dropout=0.05, target_modules=("q_proj", "k_proj", "v_proj", "o_proj",
                                                                    "gate_proj", "up_proj", "down_proj")))
    model.gradient_checkpointing_enable(checkpointing)
    model.train()
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        with autocast:
            logits = model(ids).float()  # [B, T, V]
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        model.zero_grad(set_to_none=True)

    step()  # warm-up: kernels, the RoPE table, lazily created buffers
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)        # return what the warm-up freed, so the step must map it again
        with open("/proc/self/clear_refs", "w") as f:  # "5": reset VmHWM to the current RSS (Linux >= 4.0)
            f.write("5")
        before = proc_status_kib("VmRSS")
        step()
        peak = (proc_status_kib("VmHWM") - before) * 1024
    return {"checkpointing": checkpointing, "peak_bytes": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args, args.child == "on")))
        return
    peaks = {}
    for setting in ("off", "on"):
        argv = [*sys.argv[1:], "--child", setting, "--device", args.device]
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # see the module docstring
        proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            sys.exit(f"error: the {setting} measurement failed: {proc.stderr.strip().splitlines()[-1:]}")
        peaks[setting] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"]
    print(f"device {args.device}, {args.layers} layers, d={args.hidden}, batch {args.batch} x {args.seq}, LoRA r=8 on "
          "all projections; peak memory of one training step:")
    print(f"  without activation checkpointing  {peaks['off'] / 2**20:9.1f} MiB")
    print(f"  with activation checkpointing     {peaks['on'] / 2**20:9.1f} MiB")
    print(f"  ratio with / without              {peaks['on'] / peaks['off']:9.3f}")


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


if __name__ == "__main__":
    main()
