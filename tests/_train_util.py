"""Helpers shared by the training tests (the `tiny_train` fixture itself is in conftest.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


def train_args(tiny, out, *extra) -> list[str]:
    """scripts/train.py flags for a 6-step run on `tiny_train` (2 epochs of 3 steps, batch 4)."""
    base, data_file = tiny
    return ["--preset", "none", "--base", str(base), "--data", str(data_file), "--out", str(out),
            "--val-size", "8", "--batch-size", "4", "--micro-batch-size", "2", "--num-epochs", "2",
            "--warmup-steps", "2", "--lr", "1e-2", "--eval-steps", "2", "--save-steps", "2", "--cutoff-len", "160",
            "--num-threads", "1", *extra]


def adapter(run: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(str(run / name / "adapter_model.safetensors"))


def metrics(run: Path) -> list[dict]:
    """metrics.jsonl without the timing column."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


def torchrun(script: str, args: list[str], nproc: int = 2, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node N scripts/SCRIPT ARGS` (gloo, 1 thread)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(REPO / "scripts" / script), *args]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", **env}, capture_output=True, text=True,
                          timeout=timeout)
