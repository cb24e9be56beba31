"""`lora.memory` against real tensors: parameter, gradient and optimizer bytes of instantiated tiny models,
the bytes autograd saves per layer (measured with saved-tensor hooks), FSDP2's dim-0 chunking; the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest
import torch

from lora import LoraConfig, apply_lora
from lora.cli import main as lora_main
from lora.memory import PROJECTIONS, estimate, head_activation_bytes, layer_activation_bytes, rope_bytes
from minillama.nf4 import quantize_model
from minillama import Llama, LlamaConfig

TINY = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _model(config=TINY, quantize=None, double_quant=True, targets=ATTN, r=8, dropout=0.05) -> Llama:
    torch.manual_seed(0)
    model = Llama(config).to(torch.bfloat16)
    model.model.rotary_emb.reset_cache(device="cpu")
    if quantize:
        quantize_model(model, double_quant=double_quant)
    return apply_lora(model, LoraConfig(r=r, dropout=dropout, target_modules=targets))


@pytest.mark.parametrize("quantize, double_quant, tied", [
    (None, True, False), ("nf4", True, True),
    *[pytest.param(q, d, t, marks=pytest.mark.slow) for q, d, t in [
        (None, True, True), ("nf4", False, False), ("nf4", False, True), ("nf4", True, False)]]])
def test_weights_lora_grads_and_adamw_state_equal_the_real_tensors(quantize, double_quant, tied):
    config = TINY.replace(tie_word_embeddings=tied)
    targets = ("q_proj", "v_proj", "down_proj")
    model = _model(config, quantize, double_quant, targets)
    est = estimate(config, quantize=quantize, double_quant=double_quant, targets=targets)
    lora = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert est.weights == _nbytes(frozen) + _nbytes(model.buffers())  # NF4 storage and RoPE tables are buffers
    assert est.lora_params == _nbytes(lora)
    model.train()
    ids = torch.randint(0, 96, (1, 12))
    model(ids).float().sum().backward()
    opt = torch.optim.AdamW(lora, lr=1e-3)
    opt.step()
    assert est.lora_grads == _nbytes(p.grad for p in lora)
    moments = [t for s in opt.state.values() for k, t in s.items() if k != "step"]  # step: host-side scalars
    assert est.optimizer == _nbytes(moments) and len(moments) == 2 * len(lora)


def _saved_bytes(model: Llama, ids: torch.Tensor, checkpointing: bool = False) -> dict[str, int]:
    """Bytes autograd saves for backward (one count per storage; weights excluded), by decoder layer."""
    exclude = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen, where, rope = {}, ["head"], set()
    for i, layer in enumerate(model.model.layers):
        layer.register_forward_pre_hook(lambda m, a, i=i: where.__setitem__(0, f"layer{i}"))
        layer.register_forward_hook(lambda m, a, o: where.__setitem__(0, "head"))
    model.model.rotary_emb.register_forward_hook(  # cos/sin: computed once, shared by all layers
        lambda m, a, out: rope.update(t.untyped_storage().data_ptr() for t in out))

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in exclude and ptr not in seen:
            seen[ptr] = ("head" if ptr in rope else where[0], t.untyped_storage().nbytes())
        return t

    model.gradient_checkpointing_enable(checkpointing)
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", torch.bfloat16):
        logits = model.lm_head(model.model(ids)).float()  # [B, T, V]: loss on every position
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten())
    by = defaultdict(int)
    for part, n in seen.values():
        by[part] += n
    return dict(by)


@pytest.mark.parametrize("targets, dropout, quantize", [
    (ATTN, 0.05, None), (PROJECTIONS, 0.1, "nf4"),
    *[pytest.param(t, d, q, marks=pytest.mark.slow) for t, d, q in [
        (ATTN, 0.0, None), (("v_proj",), 0.05, None), (PROJECTIONS, 0.1, None), (ATTN, 0.05, "nf4"),
        (ATTN, 0.0, "nf4"), (("v_proj",), 0.05, "nf4")]]])
def test_activation_formula_equals_what_autograd_saves(targets, dropout, quantize):
    """The GPU recipe (bf16 base, fp32 LoRA, bf16 autocast) run on the CPU, whose dropout keeps a float32 mask."""
    model = _model(targets=targets, dropout=dropout, quantize=quantize)
    batch, seq = 2, 24
    saved = _saved_bytes(model, torch.randint(0, 96, (batch, seq)))
    layer = layer_activation_bytes(TINY, batch * seq, 8, targets, dropout > 0, mask_bytes=4)
    assert saved["layer1"] == saved["layer2"] == layer  # every layer whose input needs a gradient
    assert saved["layer0"] <= layer                     # layer 0's input needs none: it saves less
    assert saved["head"] == head_activation_bytes(TINY, batch, seq)


def test_checkpointing_keeps_only_the_layer_inputs():
    model = _model()
    batch, seq = 1, 24
    n = batch * seq
    saved = _saved_bytes(model, torch.randint(0, 96, (batch, seq)), checkpointing=True)
    inputs = 3 * n * TINY.hidden_size * 2  # the bf16 input of each checkpointed layer
    assert sum(saved.values()) == inputs + head_activation_bytes(TINY, batch, seq)
    # during backward one layer at a time is recomputed and holds its activations again
    est = estimate(TINY, batch=batch, seq_len=seq)
    assert est.activations_checkpointed == sum(saved.values()) + layer_activation_bytes(TINY, n, 8, ATTN)


@pytest.mark.parametrize("gpus", [2, 3, 5])
def test_fsdp_shards_like_torch_chunk_of_the_real_parameters(gpus):
    model = _model()
    est = estimate(TINY, gpus=gpus, fsdp=True)

    def shard(p):  # FSDP2: dim 0 split by torch.chunk, every rank padded to the first (largest) chunk
        return torch.chunk(p, gpus, dim=0)[0].numel() * p.element_size()

    frozen = [p for p in model.parameters() if not p.requires_grad]
    lora = [p for p in model.parameters() if p.requires_grad]
    assert est.weights == sum(shard(p) for p in frozen) + rope_bytes(TINY)
    assert est.lora_params == est.lora_grads == sum(shard(p) for p in lora) and est.optimizer == 2 * est.lora_params
    single = estimate(TINY)
    assert est.weights < single.weights and est.activations == single.activations


def test_nf4_shrinks_the_7b_weights_about_fourfold():
    bf16, nf4 = (estimate(LlamaConfig(), quantize=q) for q in (None, "nf4"))
    linear = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert bf16.weights - nf4.weights == pytest.approx(linear * (2 - 4.127 / 8), rel=1e-3)
    assert bf16.lora_params == nf4.lora_params and bf16.activations == nf4.activations


def test_cli_table_json_and_sources(tmp_path, capsys):
    assert lora_main(["memory", "--model", "llama-2-7b", "--quantize", "nf4"]) == 0
    table = capsys.readouterr().out
    assert "NF4 + double quant" in table and "activations with checkpointing" in table
    assert lora_main(["memory", "--model", "llama-2-70b", "--gpus", "8", "--fsdp", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["gpus"] == 8 and report["fsdp"] and report["bytes"]["transient"] > 0
    assert report["total_bytes"] == sum(report["bytes"][k] for k in report["bytes"] if k != "activations_checkpointed")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps(TINY.to_hf_dict()))
    for spec in (tmp_path / "m", tmp_path / "m" / "config.json"):
        assert lora_main(["memory", "--model", str(spec), "--json", "--seq-len", "24"]) == 0
        assert json.loads(capsys.readouterr().out)["bytes"] == {
            k: v for k, v in estimate(TINY, seq_len=24).to_json()["bytes"].items()}


@pytest.mark.parametrize("args, message", [
    (["--model", "no-such-model"], "error: no-such-model: not a built-in model"),
    (["--model", "llama-2-7b", "--fsdp", "--quantize", "nf4"], "error: --quantize nf4 with --fsdp: not supported"),
    (["--model", "llama-2-7b", "--gpus", "0"], "error: --gpus: must be a positive integer"),
    (["--model", "llama-2-7b", "--target-modules", "qkv"], "error: --target-modules: qkv is not one of"),
    (["--model", "llama-2-7b", "--seq-len", str(10**12)],
     "error: --seq-len: 1000000000000 exceeds the model's context of 4096 positions"),
    (["--model", "llama-2-7b", "--no-double-quant"], "error: --no-double-quant: only with --quantize nf4"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert lora_main(["memory", *args]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(message) and captured.err.count("\n") == 1 and captured.out == ""


@pytest.mark.slow
def test_cli_hub_id_reads_the_cached_config_and_offline_fails_in_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    repo = tmp_path / "hf" / "hub" / "models--someone--tiny"  # the Hugging Face cache layout
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123" / "config.json").write_text(json.dumps(TINY.to_hf_dict()))
    run = [sys.executable, "-m", "lora", "memory", "--json", "--model"]
    proc = subprocess.run(run + ["someone/tiny"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert TINY.max_position_embeddings < 256  # the default --seq-len is then the model's context
    expected = estimate(TINY, seq_len=TINY.max_position_embeddings).to_json()["bytes"]
    assert json.loads(proc.stdout)["bytes"] == expected
    proc = subprocess.run(run + ["someone/not-cached"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: someone/not-cached: not in the local Hugging Face cache (HF_HUB_OFFLINE "
                                  "is set") and proc.stderr.count("\n") == 1


def test_merge_refuses_no_double_quant_without_nf4(tmp_path, capsys):
    assert lora_main(["merge", "--base", str(tmp_path / "b"), "--adapter", str(tmp_path / "a"), "--out",
                      str(tmp_path / "out"), "--no-double-quant"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --no-double-quant: only with --quantize nf4") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("targets, dropout, quantize", [(ATTN, 0.05, None), (PROJECTIONS, 0.0, "nf4")])
def test_dora_parameters_and_activations_equal_the_real_tensors(targets, dropout, quantize):
    """DoRA: the magnitudes count in the trainable bytes; each adapted projection keeps its two bf16 [N, out] terms
    and three float32 [out] vectors more than LoRA (measured with saved-tensor hooks)."""
    torch.manual_seed(0)
    model = Llama(TINY).to(torch.bfloat16)
    model.model.rotary_emb.reset_cache(device="cpu")
    if quantize:
        quantize_model(model)
    apply_lora(model, LoraConfig(r=8, dropout=dropout, target_modules=targets, use_dora=True))
    est = estimate(TINY, quantize=quantize, targets=targets, dora=True)
    lora = [p for p in model.parameters() if p.requires_grad]
    assert est.lora_params == _nbytes(lora) and len(lora) == 3 * TINY.num_hidden_layers * len(targets)
    batch, seq = 2, 24
    saved = _saved_bytes(model, torch.randint(0, 96, (batch, seq)))
    layer = layer_activation_bytes(TINY, batch * seq, 8, targets, dropout > 0, mask_bytes=4, dora=True)
    assert saved["layer1"] == saved["layer2"] == layer
    assert saved["head"] == head_activation_bytes(TINY, batch, seq)


def test_cli_use_dora_counts_the_magnitudes(capsys):
    assert lora_main(["memory", "--model", "llama-2-7b", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert lora_main(["memory", "--model", "llama-2-7b", "--json", "--use-dora"]) == 0
    dora = json.loads(capsys.readouterr().out)
    assert dora["dora"] is True and plain["dora"] is False
    assert dora["bytes"]["lora_params"] - plain["bytes"]["lora_params"] == 32 * 4 * 4096 * 4  # m: 4096 per layer
    assert lora_main(["count", "--use-dora"]) == 0
    with_m = capsys.readouterr().out
    assert lora_main(["count"]) == 0
    without = capsys.readouterr().out
    trainable = [int(line.split("||")[0].split(":")[1].replace(",", "")) for line in (with_m, without)]
    assert trainable[0] - trainable[1] == 32 * 4 * 4096
