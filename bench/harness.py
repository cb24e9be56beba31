"""What the benchmarks share: fresh child processes that report one JSON line, peak memory from /proc, a random
bf16 checkpoint, and the `--json` / `--out` result file. A benchmark imports it as `harness` (its folder is on
`sys.path` when it runs: `python bench/NAME.py`)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def proc_status_kib(field: str) -> int:
    """A memory field of /proc/self/status in KiB: VmRSS (now) or VmHWM (peak of this process image).

    VmHWM is used instead of `ru_maxrss`, which Linux carries over from the parent across fork+exec
    (so a child of a big parent would report the parent's size).
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def child(script: str, *args: str, one_thread: bool = True) -> dict | None:
    """Run `python SCRIPT ARGS` in a fresh process (one OpenMP thread unless told); its last stdout line as JSON,
    or None after printing the failure's last line to stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if one_thread else None
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        print(f"{' '.join(args)}: failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def checkpoint_folder(keep: Path | None, prefix: str, layers: int):
    """`keep` (written there once and kept), else a temporary folder deleted afterwards; holds a random bf16
    Llama checkpoint of `layers` layers (`write_checkpoint`)."""
    tmp = None if keep else tempfile.mkdtemp(prefix=prefix)
    folder = keep or Path(tmp) / "ckpt"
    try:
        if not (folder / "config.json").is_file():
            write_checkpoint(folder, layers)
        yield folder
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def write_checkpoint(folder: Path, layers: int) -> None:
    """A random Llama (Llama-2 vocabulary, width 2048) saved in bf16 with save_pretrained."""
    import torch
    from tqdm import tqdm

    from minillama import Llama, LlamaConfig

    config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5504, num_hidden_layers=layers,
                         num_attention_heads=16, num_key_value_heads=16, head_dim=128)
    with torch.device("meta"):
        model = Llama(config)
    g = torch.Generator().manual_seed(0)
    state = {name: (torch.randn(p.shape, generator=g) * 0.02).to(torch.bfloat16)
             for name, p in tqdm(list(model.state_dict().items()), desc="random weights", unit="tensor")}
    model.load_state_dict(state, assign=True)
    model.model.rotary_emb.reset_cache(device="cpu")
    model.save_pretrained(folder)


def save_results(path: str | Path | None, results, indent: int = 2):
    """Write `results` as JSON to `path` (the `--json` / `--out` flag) when given; return them."""
    if path:
        Path(path).write_text(json.dumps(results, indent=indent) + "\n")
    return results


def add_run_flags(p, repeats: int, repeats_help: str, threads: int, threads_help: str) -> None:
    """`--repeats`, `--threads` and `--out FILE` (the results as JSON), as the timing benchmarks spell them."""
    p.add_argument("--repeats", type=int, default=repeats, help=repeats_help)
    p.add_argument("--threads", type=int, default=threads, help=threads_help)
    p.add_argument("--out", help="also write the results as JSON here")
