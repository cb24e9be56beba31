"""scripts/train.py end to end on tiny models: resume == uninterrupted (bitwise), DDP (2 x gloo) == one
process, the run folder is protected, the demo's validation loss falls, the paper preset fails in one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _train_util import adapter, metrics, train_args
from minillama import MiniLlamaError

from medlora_scripts import train

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny(tiny_train):
    return tiny_train


def args_for(tiny, out, *extra):
    return train_args(tiny, out, *extra)


def run_train(argv: list[str]) -> Path:
    """scripts/train.py in-process, raising its errors instead of printing them."""
    return train.run(argv)


def test_resume_equals_uninterrupted_bitwise(tiny, tmp_path):
    full = run_train(args_for(tiny, tmp_path / "full"))
    part = run_train(args_for(tiny, tmp_path / "part", "--stop-after-steps", "3"))
    assert not (part / "DONE").exists() and (part / "checkpoints" / "step_00000003" / "state.json").is_file()
    assert run_train(["--resume", "--out", str(part)]) == part
    assert (part / "DONE").is_file()
    for name in ("adapter_last", "adapter"):
        a, b = adapter(full, name), adapter(part, name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert metrics(full) == metrics(part)
    assert len([r for r in metrics(full) if r["type"] == "train"]) == 6  # 10 train pairs / 4 -> 3 steps x 2 epochs
    layout = {"config.json", "split.json", "adapter", "adapter_last", "checkpoints", "metrics.jsonl",
              "data_report.json", "DONE", "loss.png"}
    assert layout <= {p.name for p in full.iterdir()}
    split = json.loads((full / "split.json").read_text())
    assert split["seed"] == 42 and len(split["val_ids"]) == 8 and len(split["train_ids"]) == 10


def test_refuses_to_overwrite_a_run_folder(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("precious")
    assert train.main(args_for(tiny, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --out {out}: already holds results (config.json)")
    assert (out / "config.json").read_text() == "precious"
    assert train.main(["--resume", "--out", str(out)]) == 2
    assert "cannot read the run's config.json" in capsys.readouterr().err
    assert (out / "config.json").read_text() == "precious"
    (out / "notes.txt").write_text("not ours")
    assert train.main(args_for(tiny, out, "--force", "--max-steps", "1")) == 0
    assert json.loads((out / "config.json").read_text())["max_steps"] == 1 and (out / "DONE").is_file()
    assert (out / "notes.txt").read_text() == "not ours"  # --force deletes only what a run writes


@pytest.mark.slow
def test_demo_validation_loss_falls(tmp_path):
    run = run_train(["--out", str(tmp_path / "demo"), "--demo-records", "160", "--val-size", "24",
                      "--demo-pretrain-steps", "40", "--max-steps", "24", "--eval-steps", "8", "--num-threads", "1"])
    val = [r["loss"] for r in metrics(run) if r["type"] == "val"]
    assert len(val) == 4 and all(b < a for a, b in zip(val, val[1:])) and val[-1] < 0.85 * val[0], val
    result = json.loads((run / "demo_eval.json").read_text())
    assert result["n"] == 24 and result["finetuned"]["mean_f1"] > result["base"]["mean_f1"], result
    assert (run / "DONE").is_file() and (run / "base" / "tokenizer.model").is_file()


@pytest.mark.slow
def test_paper_preset_without_weights_fails_in_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": ""}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "train.py"), "--preset", "paper",
                           "--out", str(tmp_path / "paper")], env=env, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    # No cached copy while offline is the world getting in the way (1, docs/cli.md), not bad input (2).
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: meta-llama/Llama-2-7b-chat-hf:") and "hf auth login" in lines[0]
    assert not (tmp_path / "paper").exists()


def test_activation_checkpointing_gives_the_same_update(tiny, tmp_path):
    plain = run_train(args_for(tiny, tmp_path / "plain", "--max-steps", "2"))
    ckpt = run_train(args_for(tiny, tmp_path / "ckpt", "--max-steps", "2", "--activation-checkpointing"))
    a, b = adapter(plain, "adapter_last"), adapter(ckpt, "adapter_last")
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_failed_start_writes_nothing(tiny, tmp_path, capsys):
    """Bad --base / --data fail before the run folder is touched, so the corrected rerun is not refused."""
    base, data_file = tiny
    out = tmp_path / "run"
    assert train.main(["--out", str(out), "--base", str(tmp_path / "missing"), "--data", str(data_file)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --base {tmp_path / 'missing'}: no such model folder or .gguf "
                                               "file (nor a Hugging Face Hub id)")
    assert not out.exists()  # not even an empty folder
    bad = tmp_path / "other.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    out.mkdir()
    assert train.main(args_for(tiny, out, "--data", str(bad))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {bad}: none of 1 records is usable (first: record 0: missing field 'instruction'; "
                   "see --on-bad-record)"]
    assert out.is_dir() and not any(out.iterdir())  # the user's own folder stays
    assert train.main(args_for(tiny, out, "--max-steps", "1")) == 0


def test_resume_and_force_are_exclusive(capsys):
    assert train.main(["--resume", "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not allowed with argument" in err[0]


@pytest.mark.parametrize("error, expect", [
    (ConnectionError("[Errno -2] Name or service not known"),
     "cannot reach huggingface.co ([Errno -2] Name or service not known); check the network"),
    (TimeoutError("timed out"), "cannot reach huggingface.co (timed out)"),
])
def test_hub_unreachable_is_not_reported_as_a_licence_problem(monkeypatch, tmp_path, error, expect):
    """No network: one quick probe, a message about the network (not the licence), no folder."""
    import huggingface_hub
    from huggingface_hub import constants

    calls = []

    def probe(url, timeout=None, **kw):
        calls.append(timeout)
        raise error
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **kw: None)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", probe)
    with pytest.raises(MiniLlamaError) as e:
        run_train(["--preset", "paper", "--out", str(tmp_path / "paper")])
    assert str(e.value).startswith(f"meta-llama/Llama-2-7b-chat-hf: {expect}") and "licence" not in str(e.value)
    assert calls == [10.0] and not (tmp_path / "paper").exists()


def test_demo_base_is_built_once_per_recipe(tmp_path, monkeypatch, capsys):
    """The demo base is cached under a hash of its recipe: a second demo (or a rerun after a kill before the
    first checkpoint) copies it instead of rebuilding; another recipe builds anew."""
    from lora.finetune import demo_data, demo_model

    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path / "cache"))
    built = []
    real = demo_model.build_demo_base

    def counting(out_dir, records, steps, seed=0, **kw):
        built.append(steps)
        return real(out_dir, records, steps, seed=seed, batch=4, seq_len=32, sizes=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
            head_dim=16))
    monkeypatch.setattr(demo_model, "build_demo_base", counting)
    records = demo_data.make_records(12, seed=1)
    a = demo_model.cached_demo_base(tmp_path / "a" / "base", records, steps=3, seed=1)
    b = demo_model.cached_demo_base(tmp_path / "b" / "base", records, steps=3, seed=1)
    assert built == [3] and "reusing the cached build" in capsys.readouterr().err
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    demo_model.cached_demo_base(tmp_path / "c" / "base", records, steps=4, seed=1)
    assert built == [3, 4]
    assert not list((tmp_path / "cache" / "demo-base").glob(".*.tmp"))


@pytest.mark.slow
def test_qlora_run_resumes_bitwise_and_is_answered_on_its_4bit_base(tiny, tmp_path):
    """--quantize nf4: the base is 4-bit, only LoRA trains, resume is bitwise equal; chat and generation
    load the run's base in NF4 again."""
    from lora.finetune.trained_run import TrainRun
    from minillama.nf4 import NF4Linear
    from minillama.chat import resolve_session

    full = run_train(args_for(tiny, tmp_path / "full", "--quantize", "nf4"))
    part = run_train(args_for(tiny, tmp_path / "part", "--quantize", "nf4", "--stop-after-steps", "3"))
    run_train(["--resume", "--out", str(part)])
    for name in ("adapter_last", "adapter"):
        a, b = adapter(full, name), adapter(part, name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert metrics(full) == metrics(part)
    assert json.loads((full / "config.json").read_text())["quantize"] == "nf4"
    model = TrainRun.open(full).load_base_model("float32", "cpu")
    assert isinstance(model.model.layers[0].self_attn.q_proj, NF4Linear)
    assert resolve_session(str(full)).quantize == "nf4"
    assert train.main(args_for(tiny, tmp_path / "x", "--quantize", "nf4", "--fsdp")) == 2  # refused, one line


def test_the_demo_tokenizer_is_the_same_file_everywhere(tmp_path):
    """Built twice in two folders, the demo's tokenizer.model is the same bytes and holds no path."""
    from lora.finetune import demo_data, demo_model

    texts = demo_data.make_corpus(400, seed=1)
    a = demo_model.train_tokenizer(texts, tmp_path / "one" / "tokenizer.model", vocab_size=400)
    b = demo_model.train_tokenizer(texts, tmp_path / "two" / "deeper" / "tokenizer.model", vocab_size=400)
    data = a.path.read_bytes()
    assert data == b.path.read_bytes() and str(tmp_path).encode() not in data and b"/tmp" not in data
    assert a.encode("a sore throat") == b.encode("a sore throat")


@pytest.mark.slow
def test_fsdp_without_torchrun_is_one_line(tiny, tmp_path, capsys):
    assert train.main(args_for(tiny, tmp_path / "f", "--fsdp")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--fsdp: shards the base over several processes; start the run with torchrun" in err[0]
    assert not (tmp_path / "f").exists()


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_again_from_step_0(tiny, tmp_path, capsys):
    """A disk that fills before the first checkpoint says "rerun with --resume"; --resume then starts from step 0
    (saying so) and ends equal to an uninterrupted run, instead of "no intact checkpoint"."""
    full = run_train(args_for(tiny, tmp_path / "full"))
    part = tmp_path / "part"
    run_train(args_for(tiny, part, "--stop-after-steps", "2"))
    import shutil
    shutil.rmtree(part / "checkpoints")  # as if no checkpoint had been written yet
    for name in ("adapter", "adapter_last"):
        shutil.rmtree(part / name, ignore_errors=True)
    capsys.readouterr()
    assert run_train(["--resume", "--out", str(part)]) == part
    assert "no intact checkpoint yet; training starts again from step 0" in capsys.readouterr().err
    for name in ("adapter_last", "adapter"):
        a, b = adapter(full, name), adapter(part, name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert metrics(full) == metrics(part)
