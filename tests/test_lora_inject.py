"""apply_lora / trainable_summary / merge_lora on transformers' LlamaForCausalLM (same names as minillama)."""
from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn as nn

from _lora_util import assert_same_state, input_ids, logits, make_tiny_hf_llama, randomize_lora, snapshot
from lora import LoraConfig, LoraError, LoRALinear, apply_lora, lora_layers, merge_lora, trainable_summary

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def test_apply_lora_wraps_every_layer_and_equals_base_at_init():
    model = make_tiny_hf_llama()
    ids = input_ids()
    before = logits(model, ids)
    apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0))
    names = [n for n, _ in lora_layers(model)]
    assert names == [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ATTN]
    assert torch.equal(logits(model, ids), before)             # B = 0: exactly the base model
    assert {n for n, p in model.named_parameters() if p.requires_grad} == \
        {f"{n}.{w}.weight" for n in names for w in ("lora_A", "lora_B")}
    assert "model.layers.0.self_attn.q_proj.weight" in model.state_dict()   # base keys unchanged


def test_mlp_targets_on_request():
    model = make_tiny_hf_llama()
    apply_lora(model, LoraConfig(r=2, target_modules=ATTN + MLP))
    assert len(lora_layers(model)) == 2 * 7
    assert isinstance(model.model.layers[1].mlp.down_proj, LoRALinear)


def test_regex_target_selects_exact_modules():
    model = make_tiny_hf_llama()
    apply_lora(model, LoraConfig(r=2, target_modules=r"model\.layers\.0\.self_attn\.(q|v)_proj"))
    assert [n for n, _ in lora_layers(model)] == ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"]


def test_trainable_summary_counts_by_hand():
    model = make_tiny_hf_llama()
    total_base = sum(p.numel() for p in model.parameters())
    apply_lora(model, LoraConfig(r=4))
    s = trainable_summary(model)
    h = 64                                                     # q, k, v, o are all [64, 64] here
    assert s.trainable == 2 * 4 * 4 * (h + h)                  # layers * modules * r * (in + out)
    assert s.total == total_base + s.trainable
    assert s.percent == pytest.approx(100 * s.trainable / s.total)
    assert str(s) == f"trainable params: {s.trainable:,} || all params: {s.total:,} || trainable%: {s.percent:.4f}"


def test_llama2_7b_count_on_meta_device():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    h, f, v, n = 4096, 11008, 32000, 32
    base = 2 * v * h + n * (4 * h * h + 3 * h * f + 2 * h) + h  # embed + lm_head + layers + final norm
    assert trainable_summary(model).total == base
    apply_lora(model, LoraConfig(r=8))                         # q, k, v, o
    s = trainable_summary(model)
    assert s.trainable == n * 4 * 8 * (h + h)                  # layers * modules * r * (in + out)
    assert s.total == base + s.trainable


def test_one_optimiser_step_changes_only_a_and_b_and_grads_reach_only_them():
    model = make_tiny_hf_llama()
    apply_lora(model, LoraConfig(r=4, dropout=0.0))
    randomize_lora(model)
    model.train()
    before = snapshot(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    ids = input_ids()
    model(ids, labels=ids).loss.backward()
    for name, p in model.named_parameters():
        if ".lora_" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    opt.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {n for n, p in model.named_parameters() if p.requires_grad}


def test_bad_target_is_one_line_and_changes_nothing():
    model = make_tiny_hf_llama()
    before = snapshot(model)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    for config, words in [(LoraConfig(target_modules=("q_proj", "foo_proj")), "'foo_proj' matches no module"),
                          (LoraConfig(target_modules=("self_attn",)), "not an nn.Linear")]:
        with pytest.raises(LoraError) as info:
            apply_lora(model, config)
        assert words in str(info.value) and "\n" not in str(info.value)
    assert not lora_layers(model) and grads == {n: p.requires_grad for n, p in model.named_parameters()}
    assert_same_state(model, before)


def test_apply_twice_is_refused():
    model = apply_lora(make_tiny_hf_llama(), LoraConfig(r=2))
    with pytest.raises(LoraError, match="already has LoRA layers"):
        apply_lora(model, LoraConfig(r=2))


@pytest.mark.parametrize("unload", [True, False])
def test_merge_lora_keeps_logits(unload):
    model = apply_lora(make_tiny_hf_llama(), LoraConfig(r=4, target_modules=ATTN + MLP))
    randomize_lora(model)
    ids = input_ids()
    expected = logits(model, ids)
    merge_lora(model, unload=unload)
    torch.testing.assert_close(logits(model, ids), expected)
    if unload:
        assert not lora_layers(model) and type(model.model.layers[0].self_attn.q_proj) is nn.Linear
        assert not any(".lora_" in k for k in model.state_dict())
    else:
        assert all(layer.merged for _, layer in lora_layers(model))
    with pytest.raises(LoraError, match="no LoRA layers") if unload else contextlib.nullcontext():
        merge_lora(model, unload=unload)
