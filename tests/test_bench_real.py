"""The real-model benchmarks (bench/bench_train.py --model, bench/bench_generate_real.py) run end to end on a
tiny Hugging Face folder (random weights, a small byte-level BPE tokenizer) and report every figure."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _bpe_util import train_llama3_tokenizer, write_tokenizer_config
from conftest import make_tiny_hf_llama

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """(a HF Llama folder with its tokenizer, a GenMedGPT-shaped JSON file)."""
    from lora.finetune import demo_data

    root = tmp_path_factory.mktemp("bench_real")
    train_llama3_tokenizer(root / "model", vocab_size=400)
    write_tokenizer_config(root / "model")
    make_tiny_hf_llama(root / "model", vocab_size=420, tie_word_embeddings=True, num_key_value_heads=2)
    config = json.loads((root / "model" / "config.json").read_text())  # room for the prompts (bytes: long)
    (root / "model" / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 1024}))
    return root / "model", demo_data.write_demo_dataset(root / "data.json", 40, seed=1)


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "bench" / script), *args], capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["--setting", "paper"], ["--setting", "preset", "--packing", "--autocast"],
                                   ["--setting", "preset", "--dropout", "0.1"]])
def test_bench_train_on_a_model_folder(tiny_folder, tmp_path, flags):
    model, data = tiny_folder
    out = tmp_path / "train.json"
    proc = run("bench_train.py", "--model", str(model), "--data", str(data), "--steps", "1", "--warmup", "0",
               "--repeats", "1", "--threads", "1", "--mfu", "--out", str(out), *flags)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [row] = json.loads(out.read_text())
    assert row["model"] == "model" and row["data"] == "data.json + model tokenizer"
    assert row["batch"] == ("1x256" if "paper" in flags else "4x256")
    assert row["lora_dropout"] == (0.1 if "--dropout" in flags else 0.05 if "paper" in flags else 0.0)
    for key in ("ours_tokens_per_s", "hf_tokens_per_s", "ours_peak_gib", "hf_peak_gib", "matmul_peak_flops_per_s",
                "ours_model_flops_per_s", "hf_model_flops_per_s", "ours_seconds_per_step"):
        assert row[key] > 0, key
    assert "ratio" in proc.stdout and "of the matmul peak" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--ignore-eos", "--no-longest-first"]])
def test_bench_generate_real_gives_the_same_tokens_as_transformers(tiny_folder, tmp_path, flags):
    model, data = tiny_folder
    out = tmp_path / "gen.json"
    proc = run("bench_generate_real.py", "--model", str(model), "--data", str(data), "--batch", "3",
               "--batches", "2", "--new-tokens", "6", "--repeats", "1", "--threads", "1", "--out", str(out), *flags)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(out.read_text())
    assert row["same_outputs_fraction"] == 1.0 and row["tokens"] > 0 and row["speed_ratio"] > 0
    assert row["ignore_eos"] == bool(flags) and row["longest_first"] == (not flags)
    if flags:  # every row decodes all its tokens
        assert row["tokens"] == 3 * 2 * 6


def test_bench_scripts_name_a_missing_model_folder_in_one_line(tmp_path):
    for script in ("bench_train.py", "bench_generate_real.py"):
        proc = run(script, "--model", str(tmp_path / "nowhere"))
        assert proc.returncode != 0 and proc.stderr.strip().startswith("error: --model"), proc.stderr
