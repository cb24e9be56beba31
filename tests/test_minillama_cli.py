"""`python -m minillama generate`: streams text; bad input is one `error:` line and a non-zero exit."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO_ROOT, make_tiny_hf_llama
from minillama import Llama, Tokenizer
from minillama.cli import main


@pytest.fixture
def model_dir(tmp_path, llama2_tokenizer_path) -> Path:
    make_tiny_hf_llama(tmp_path / "m", vocab_size=32000, hidden_size=32, intermediate_size=48,
                       num_attention_heads=2, num_key_value_heads=1)
    (tmp_path / "m" / "tokenizer.model").symlink_to(llama2_tokenizer_path)
    return tmp_path / "m"


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main(argv, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_generate_streams_the_greedy_continuation(model_dir):
    rc, out, err = _run(["generate", "--model", str(model_dir), "--prompt", "I have a fever",
                         "--max-new-tokens", "12", "--dtype", "float32"])
    assert rc == 0, err
    tok = Tokenizer(model_dir / "tokenizer.model")
    ids = tok.encode("I have a fever")
    expected = Llama.from_pretrained(model_dir).generate(torch.tensor([ids]), 12, eos_id=tok.eos_id)
    assert out == tok.decode(expected[0, len(ids):].tolist()) + "\n"
    assert "12 tokens" in err and "finish_reason=length" in err


def test_chat_and_sampling_options(model_dir, llama2_tokenizer_path):
    argv = ["generate", "--model", str(model_dir), "--prompt", "Hello", "--chat", "--system", "Be kind",
            "--temperature", "0.7", "--top-p", "0.9", "--top-k", "50", "--seed", "3", "--max-new-tokens", "6",
            "--tokenizer", str(llama2_tokenizer_path)]
    first, second = _run(argv), _run(argv)
    assert first[0] == 0 and first[1] == second[1]


@pytest.mark.slow
def test_subprocess_streams_and_exits_zero(model_dir):
    proc = subprocess.run([sys.executable, "-m", "minillama", "generate", "--model", str(model_dir),
                           "--prompt", "Hi", "--max-new-tokens", "3"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith("\n") and "3 tokens" in proc.stderr


def _break(model_dir: Path, how: str) -> None:
    if how == "missing folder":
        for p in model_dir.iterdir():
            p.unlink()
        model_dir.rmdir()
    elif how == "other architecture":
        cfg = json.loads((model_dir / "config.json").read_text())
        cfg.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
        (model_dir / "config.json").write_text(json.dumps(cfg))
    elif how == "truncated safetensors":
        f = model_dir / "model.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif how == "shape mismatch":
        cfg = json.loads((model_dir / "config.json").read_text())
        cfg["intermediate_size"] = 64
        (model_dir / "config.json").write_text(json.dumps(cfg))
    elif how == "bin only":
        (model_dir / "model.safetensors").rename(model_dir / "pytorch_model.bin")
    elif how == "no tokenizer":
        (model_dir / "tokenizer.model").unlink()


@pytest.mark.parametrize("how, words", [
    ("missing folder", "model folder not found"),
    ("other architecture", "GPT2LMHeadModel"),
    ("truncated safetensors", "model.safetensors: truncated"),
    ("shape mismatch", "mlp.gate_proj.weight [48, 32] != expected [64, 32]"),
    ("bin only", "pytorch_model.bin"),
    ("no tokenizer", "no tokenizer.model"),
])
def test_bad_input_is_one_error_line(model_dir, how, words):
    before = sorted(p.name for p in model_dir.parent.rglob("*"))
    _break(model_dir, how)
    rc, out, err = _run(["generate", "--model", str(model_dir), "--prompt", "x", "--max-new-tokens", "2"])
    assert rc == 2 and out == ""  # bad input
    assert err.count("\n") == 1 and err.startswith("error: ") and words in err, err
    assert "Traceback" not in err
    after = sorted(p.name for p in model_dir.parent.rglob("*"))
    assert set(after) <= set(before) | {"pytorch_model.bin"}  # nothing new written


def test_lora_adapter_folder_as_model_says_pass_the_base(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    rc, out, err = _run(["generate", "--model", str(adapter), "--prompt", "x"])
    assert rc == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"error: {adapter}: is a LoRA adapter folder") and "no tokenizer.model" not in err
    assert "pass the base model" in err and f"python -m lora merge --base BASE --adapter {adapter}" in err


@pytest.mark.slow
def test_bad_input_subprocess_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minillama", "generate", "--model", str(tmp_path / "none"),
                           "--prompt", "x"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2  # bad input
    assert proc.stderr == f"error: {tmp_path / 'none'}: model folder not found\n"


def test_streamer_holds_back_partial_utf8_and_flushes_it(llama2_tokenizer_path):
    from minillama.cli import TextStreamer

    tok = Tokenizer(llama2_tokenizer_path)
    ids = tok.encode("fever 🙂 ok", bos=False)  # the emoji is four byte-fallback pieces
    out = io.StringIO()
    streamer = TextStreamer(tok, out, stop_ids=tok.eos_ids)
    seen = []
    for i in ids[:-1]:
        streamer(torch.tensor([i]))
        seen.append(out.getvalue())
    assert all("\ufffd" not in s for s in seen)
    streamer(torch.tensor([ids[-1]]))
    streamer(torch.tensor([tok.eos_id]))
    streamer(torch.tensor([5]))  # after EOS: ignored
    streamer.finish()
    assert out.getvalue() == "fever 🙂 ok" and streamer.stopped
