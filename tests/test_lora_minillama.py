"""LoRA on minillama.Llama: same module names as transformers, same logits as PEFT, merge CLI export."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _lora_util import input_ids, logits, make_tiny_hf_llama, randomize_lora, snapshot
from lora import LoraConfig, apply_lora, load_adapter, lora_layers, merge_lora, save_adapter, trainable_summary
from lora.cli import main as lora_main

minillama = pytest.importorskip("minillama")
peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]


@pytest.fixture
def base_dir(tmp_path):
    """A tiny random Llama saved by transformers, with a small SentencePiece tokenizer.model (96 pieces: it fits the
    model's 128 ids; `lora merge` checks that the base's tokenizer loads before it copies it)."""
    import io

    spm = pytest.importorskip("sentencepiece")
    make_tiny_hf_llama(tmp_path / "base")
    words = "the patient has a cough fever rash headache pain since two days take rest and fluids".split()
    texts = [" ".join(words[(i * k) % len(words)] for k in range(1, 9)) for i in range(200)]
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=buffer, vocab_size=96,
                                   model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
                                   minloglevel=2)
    (tmp_path / "base" / "tokenizer.model").write_bytes(buffer.getvalue())
    return tmp_path / "base"


@pytest.fixture
def peft_adapter(tmp_path, base_dir):
    """(adapter dir, PEFT logits): a PEFT adapter with non-zero B on q, k, v, o and the MLP."""
    config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=ATTN + MLP,
                             task_type="CAUSAL_LM", init_lora_weights=False)
    torch.manual_seed(5)
    model = peft.get_peft_model(transformers.LlamaForCausalLM.from_pretrained(str(base_dir)), config).eval()
    model.save_pretrained(str(tmp_path / "peft"))
    return tmp_path / "peft", logits(model, input_ids())


def test_module_names_match_transformers(base_dir):
    config = LoraConfig(r=2, target_modules=ATTN + MLP)
    ours = [n for n, _ in lora_layers(apply_lora(minillama.Llama.from_pretrained(base_dir), config))]
    hf = [n for n, _ in lora_layers(apply_lora(make_tiny_hf_llama(), config))]
    assert ours == hf and len(ours) == 14


def test_peft_adapter_in_minillama_gives_peft_logits(base_dir, peft_adapter):
    path, expected = peft_adapter
    model = load_adapter(minillama.Llama.from_pretrained(base_dir), path)
    torch.testing.assert_close(logits(model, input_ids()), expected)


def test_minillama_adapter_loads_in_peft_and_transformers(tmp_path, base_dir):
    model = minillama.Llama.from_pretrained(base_dir)
    before = logits(model, input_ids())
    apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.05))
    assert torch.equal(logits(model, input_ids()), before)     # equals the base at initialisation
    randomize_lora(model)
    expected = logits(model, input_ids())
    save_adapter(model, tmp_path / "ours", base_model_name_or_path=str(base_dir))
    theirs = peft.PeftModel.from_pretrained(transformers.LlamaForCausalLM.from_pretrained(str(base_dir)),
                                            str(tmp_path / "ours")).eval()
    torch.testing.assert_close(logits(theirs, input_ids()), expected)
    hf_ours = load_adapter(transformers.LlamaForCausalLM.from_pretrained(str(base_dir)).eval(), tmp_path / "ours")
    torch.testing.assert_close(logits(hf_ours, input_ids()), expected)


def test_save_after_merge_without_unload_says_unload(tmp_path, base_dir):
    model = apply_lora(minillama.Llama.from_pretrained(base_dir), LoraConfig(r=2))
    merge_lora(model, unload=False)
    with pytest.raises(minillama.MiniLlamaError, match=r"merged but still wrapped.*lora\.merge_lora\(model\) "
                       r"\(unload=True\) before saving"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    merge_lora(model)  # unload=True: plain nn.Linear layers, saved as a Llama checkpoint
    assert (model.save_pretrained(tmp_path / "out") / "config.json").is_file()


def test_training_step_on_minillama_changes_only_a_and_b(base_dir):
    model = apply_lora(minillama.Llama.from_pretrained(base_dir), LoraConfig(r=4, dropout=0.0))
    randomize_lora(model)
    model.train()
    before = snapshot(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ids = input_ids()
    out = model(ids)                                           # [B, T, vocab]
    torch.nn.functional.cross_entropy(out[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    assert all((p.grad is not None) == (".lora_" in n) for n, p in model.named_parameters())
    opt.step()
    after = model.state_dict()
    assert {k for k in before if not torch.equal(before[k], after[k])} == \
        {n for n, p in model.named_parameters() if p.requires_grad}


def test_llama2_7b_count_on_meta_device():
    with torch.device("meta"):
        model = minillama.Llama(minillama.LlamaConfig())       # defaults are Llama-2-7B's
    base = trainable_summary(model).total
    s = trainable_summary(apply_lora(model, LoraConfig(r=8)))
    assert s.trainable == 32 * 4 * 8 * (4096 + 4096) and s.total == base + s.trainable
    assert base == 2 * 32000 * 4096 + 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 4096


def test_merge_cli_writes_a_checkpoint_transformers_and_minillama_load(tmp_path, base_dir, peft_adapter, capsys):
    path, expected = peft_adapter
    out = tmp_path / "merged"
    code = lora_main(["merge", "--base", str(base_dir), "--adapter", str(path), "--out", str(out),
                      "--max-shard-size", "100KB"])
    assert code == 0, capsys.readouterr().err
    assert "merged 14 LoRA layers (r=4, alpha=8)" in capsys.readouterr().out
    assert (out / "model.safetensors.index.json").is_file() and len(list(out.glob("model-*.safetensors"))) > 1
    assert (out / "tokenizer.model").read_bytes() == (base_dir / "tokenizer.model").read_bytes()
    hf = transformers.LlamaForCausalLM.from_pretrained(str(out)).eval()
    torch.testing.assert_close(logits(hf, input_ids()), expected)
    torch.testing.assert_close(logits(minillama.Llama.from_pretrained(out), input_ids()), expected)
    merged_here = merge_lora(load_adapter(minillama.Llama.from_pretrained(base_dir), path))
    for name, p in merged_here.state_dict().items():
        assert torch.equal(hf.state_dict()[name], p), name


def test_merge_cli_refuses_a_non_empty_out(tmp_path, base_dir, peft_adapter, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code = lora_main(["merge", "--base", str(base_dir), "--adapter", str(peft_adapter[0]), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {out}: already exists and is not empty") and err.count("\n") == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"


@pytest.mark.slow
def test_merge_cli_bad_adapter_is_one_line_without_traceback(tmp_path, base_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text("{not json")
    proc = subprocess.run([sys.executable, "-m", "lora", "merge", "--base", str(base_dir), "--adapter", str(bad),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr  # bad input
    assert proc.stderr == f"error: {bad / 'adapter_config.json'}: malformed JSON (Expecting property name " \
                          "enclosed in double quotes at line 1 column 2)\n"
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


def test_count_cli_prints_the_7b_summary_line(capsys):
    assert lora_main(["count", "--r", "8", "--target-modules", "q_proj,v_proj"]) == 0
    trainable = 32 * 2 * 8 * (4096 + 4096)                     # layers * modules * r * (in + out)
    total = 2 * 32000 * 4096 + 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 4096 + trainable
    assert capsys.readouterr().out == (f"trainable params: {trainable:,} || all params: {total:,} || "
                                       f"trainable%: {100 * trainable / total:.4f}\n")
    assert lora_main(["count", "--target-modules", "qkv_proj"]) == 2
    assert capsys.readouterr().err.startswith("error: target module 'qkv_proj' matches no module of Llama")


def test_merge_cli_dtype_bfloat16(tmp_path, base_dir, peft_adapter, capsys):
    path, expected = peft_adapter
    out = tmp_path / "bf16"
    assert lora_main(["merge", "--base", str(base_dir), "--adapter", str(path), "--out", str(out),
                      "--dtype", "bfloat16"]) == 0
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    model = minillama.Llama.from_pretrained(out)
    assert model.dtype == torch.bfloat16
    got = logits(model, input_ids()).float()
    base = logits(minillama.Llama.from_pretrained(base_dir), input_ids())
    torch.testing.assert_close(got, expected, atol=0.03, rtol=0.016)                # bf16 rounding
    assert (got - expected).abs().max() < 0.1 * (base - expected).abs().max()      # far closer than no adapter


@pytest.mark.parametrize("targets", ["q_proj,k_proj,v_proj,o_proj", "q_proj,v_proj"])
def test_docs_show_what_the_code_computes(capsys, targets):
    assert lora_main(["count", "--target-modules", targets]) == 0
    line = capsys.readouterr().out.strip()
    assert line in (Path(__file__).resolve().parents[1] / "docs" / "lora.md").read_text()
