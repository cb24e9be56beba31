"""The GPU suite's code paths on tiny shapes (its --tiny CPU smoke run): every part runs and reports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_suite_tiny_runs_every_part(tmp_path):
    out = tmp_path / "suite.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_suite.py"), "--tiny", "--device", "cpu",
                           "--parts", "train,qlora,decode,evaluation", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert [row["batch"] for row in result["train"]] == ["1x64", "2x64"]
    assert all(row["speed_ratio"] > 0 and row["memory_ratio"] > 0 for row in result["train"])
    d = result["decode"]["decode_tokens_per_s"]
    assert {"ratio", "ratio_cuda_graph", "ratio_compiled"} <= set(d)
    assert d["same_tokens_fraction"] == 1.0  # same weights, greedy: the same tokens as transformers
    e = result["evaluation"]
    assert e["items_per_model"] == 8 and set(e["seconds"]) == {"base", "finetuned"}
    q = result["qlora"][0]
    assert q["quantize"] == "nf4" and q["batch"] == "1x64" and q["speed_ratio"] > 0
    assert len(result["summary"]) == 5 and "vs our bf16 LoRA" in result["summary"][-1] and "all parts" in proc.stdout


@pytest.mark.slow
def test_gpu_suite_refuses_a_cpu_without_tiny():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_suite.py"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and proc.stderr.strip().startswith("error: no CUDA GPU")
