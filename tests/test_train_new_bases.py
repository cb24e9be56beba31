"""Llama-3.x and Mistral bases trained and chatted with the same way as Llama-2: tiny random checkpoints written
by transformers (llama3 RoPE scaling and tied embeddings; Mistral with a sliding window), their tokenizers
(a byte-level BPE tokenizer.json; a SentencePiece tokenizer.model), `scripts/train.py --template llama3|mistral`,
a LoRA step that changes only A and B, adapters that peft loads on the transformers model with equal logits,
`minillama generate` on the run folder, and the pipeline with `--base`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lora
from _bpe_util import train_llama3_tokenizer, write_tokenizer_config
from conftest import random_hf_model
from lora.finetune import demo_data
from lora.finetune.data import collate, tokenize_record
from lora.finetune.loss import SummedNLL
from medlora_scripts import train
from minillama import Llama, load_tokenizer
from minillama.templates import answer_end_id

REPO = Path(__file__).resolve().parents[1]
SIZES = dict(hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=512, rms_norm_eps=1e-5)


@pytest.fixture(scope="module")
def llama3_base(tmp_path_factory) -> Path:
    """Llama-3 layout: tokenizer.json (BPE, Llama-3's split pattern and special tokens), tokenizer_config.json,
    llama3 RoPE scaling, tied embeddings, two EOS ids (<|end_of_text|>, <|eot_id|>)."""
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("llama3") / "base"
    path = train_llama3_tokenizer(folder, vocab_size=700)
    write_tokenizer_config(folder, bos="<|begin_of_text|>", eos="<|end_of_text|>")
    ids = json.loads(path.read_text())
    special = {t["content"]: t["id"] for t in ids["added_tokens"]}
    vocab = max(special.values()) + 1
    config = transformers.LlamaConfig(
        vocab_size=vocab, tie_word_embeddings=True, rope_theta=500000.0, bos_token_id=special["<|begin_of_text|>"],
        eos_token_id=[special["<|end_of_text|>"], special["<|eot_id|>"]],
        rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 64, "rope_type": "llama3"}, **SIZES)
    random_hf_model(transformers.LlamaForCausalLM, config, folder)
    return folder


@pytest.fixture(scope="module")
def mistral_base(tmp_path_factory) -> Path:
    """Mistral layout: tokenizer.model (SentencePiece), model_type mistral, rope theta 1e6, a sliding window."""
    transformers = pytest.importorskip("transformers")
    from lora.finetune.demo_model import train_tokenizer

    folder = tmp_path_factory.mktemp("mistral") / "base"
    texts = demo_data.make_corpus(1500, seed=2) + [r["input"] + " " + r["output"] for r in demo_data.make_records(60)]
    tok = train_tokenizer(texts, folder / "tokenizer.model", vocab_size=600)
    config = transformers.MistralConfig(vocab_size=tok.vocab_size, rope_theta=1e6, sliding_window=16,
                                        bos_token_id=1, eos_token_id=2, **SIZES)
    random_hf_model(transformers.MistralForCausalLM, config, folder)
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return demo_data.write_demo_dataset(tmp_path_factory.mktemp("data") / "data.json", 24, seed=4)


def train_args(base: Path, data: Path, out: Path, template: str, *extra) -> list[str]:
    return ["--preset", "none", "--base", str(base), "--data", str(data), "--out", str(out), "--template", template,
            "--val-size", "4", "--batch-size", "4", "--micro-batch-size", "2", "--max-steps", "3",
            "--warmup-steps", "1", "--lr", "1e-2", "--eval-steps", "3", "--save-steps", "3", "--cutoff-len", "400",
            "--num-threads", "1", *extra]


@pytest.mark.parametrize("which, template", [("llama3", "llama3"), ("mistral", "mistral")])
def test_a_lora_step_changes_only_a_and_b(request, dataset, which, template):
    base = request.getfixturevalue(f"{which}_base")
    model = Llama.from_pretrained(base)
    tok = load_tokenizer(base)
    torch.manual_seed(0)
    lora.apply_lora(model, lora.LoraConfig(r=4, alpha=8, dropout=0.0))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    records = json.loads(dataset.read_text())[:2]
    examples = [tokenize_record(r, tok, template, 400) for r in records]
    assert all(e["input_ids"][-1] == answer_end_id(tok, template) for e in examples)  # <|eot_id|> for llama3
    ids, labels = collate(examples)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    for _ in range(2):
        SummedNLL(model)(ids, labels).backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".lora_A." in k or ".lora_B." in k for k in changed), sorted(changed)[:3]
    assert any(".lora_A." in k for k in changed) and any(".lora_B." in k for k in changed)


@pytest.mark.slow
@pytest.mark.parametrize("which, template, cls", [("llama3", "llama3", "LlamaForCausalLM"),
                                                  ("mistral", "mistral", "MistralForCausalLM")])
def test_trained_adapter_loads_in_peft_and_chats(request, dataset, tmp_path, which, template, cls):
    """scripts/train.py --base FOLDER --template T; the best adapter loads in peft on the transformers model with the
    same logits as minillama's base + adapter; `minillama generate --model RUN` answers in the run's format."""
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    base = request.getfixturevalue(f"{which}_base")
    run = train.run(train_args(base, dataset, tmp_path / "run", template))
    assert json.loads((run / "config.json").read_text())["template"] == template
    tok = load_tokenizer(base)
    ids = torch.tensor([tok.encode("I have a sore throat and a fever.")])
    ours = lora.load_adapter(Llama.from_pretrained(base), run / "adapter").eval()
    hf = getattr(transformers, cls).from_pretrained(base, torch_dtype=torch.float32).eval()
    theirs = peft.PeftModel.from_pretrained(hf, run / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(input_ids=ids).logits)
        assert not torch.allclose(ours(ids), Llama.from_pretrained(base)(ids))  # the adapter changed something
    proc = subprocess.run([sys.executable, "-m", "minillama", "generate", "--model", str(run), "--prompt",
                           "I have a cough.", "--max-new-tokens", "8"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert f"template {template} (from training run" in proc.stderr


def warmed_up(base: Path, out: Path, steps: int = 60) -> Path:
    """`base` after a short full-parameter warm-up on the demo's sentences, so that it answers in words (a random
    model repeats whitespace, which every track excludes as empty)."""
    import shutil

    import torch.nn.functional as F

    from lora.finetune.demo_model import pack

    model, tok = Llama.from_pretrained(base), load_tokenizer(base)
    rows = pack([tok.encode(t, bos=True, eos=True) for t in demo_data.make_corpus(400, seed=3)], 64)  # [N, 64]
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        x = rows[torch.randint(len(rows), (8,))]  # [8, 64]
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(base / name, out / name)
    return out


@pytest.mark.slow
def test_the_pipeline_takes_a_llama3_base(llama3_base, dataset, tmp_path):
    """`scripts/reproduce.py` with train_args --base/--data/--template llama3: every stage runs, and the responses
    stop at any of Llama-3's EOS ids."""
    base = warmed_up(llama3_base, tmp_path / "warm")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"preset": "demo", "db": None,
                               "train_args": train_args(base, dataset, tmp_path / "unused", "llama3"),
                               "generation": {"max_new_tokens": 16, "batch_size": 4, "dtype": "float32"},
                               "evalkit_args": ["--keep-truncated", "--bootstrap", "200", "--permutations", "200"]}))
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "reproduce.py"), "--config", str(cfg),
                           "--run-dir", str(tmp_path / "r"), "--judge-standin"], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((tmp_path / "r" / "generations" / "meta.json").read_text())
    assert isinstance(meta["decoding"]["eos_id"], list) and len(meta["decoding"]["eos_id"]) == 2
    assert (tmp_path / "r" / "report.md").is_file() and (tmp_path / "r" / "track_b" / "table2.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("which, template, extra, procs", [
    ("llama3", "llama3", ["--quantize", "nf4"], 1),       # QLoRA: a 4-bit base of Llama-3's shape (tied)
    ("mistral", "mistral", [], 2),                        # DDP over two gloo ranks
    ("llama3", "llama3", ["--fsdp"], 2),                  # FSDP2 over two ranks
])
def test_qlora_ddp_and_fsdp_train_the_new_bases(request, dataset, tmp_path, which, template, extra, procs):
    from _train_util import torchrun

    base = request.getfixturevalue(f"{which}_base")
    args = train_args(base, dataset, tmp_path / "run", template, "--batch-size", "4", *extra)
    if procs == 1:
        run = train.run(args)
    else:
        proc = torchrun("train.py", args, nproc=procs)
        assert proc.returncode == 0, proc.stderr[-2000:]
        run = tmp_path / "run"
    assert (run / "DONE").is_file() and (run / "adapter" / "adapter_model.safetensors").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["template"] == template and config["resolved"]["world_size"] == procs
