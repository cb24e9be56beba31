"""Parity with PEFT on tiny random Llamas: our adapters load in PEFT, PEFT's load in ours, same logits."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from _lora_util import input_ids, logits, make_tiny_hf_llama, randomize_lora
from lora import LoraConfig, apply_lora, load_adapter, lora_layers, merge_lora, save_adapter

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]


def _peft_model(targets, r=4, alpha=8, use_rslora=False, seed=7, **kw):
    """A PEFT model on a fresh tiny Llama with non-zero B (`init_lora_weights=False`)."""
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets,
                             task_type="CAUSAL_LM", init_lora_weights=False, use_rslora=use_rslora)
    torch.manual_seed(seed)
    return peft.get_peft_model(make_tiny_hf_llama(**kw), config).eval()


def test_our_adapter_loads_in_peft_with_the_same_logits(tmp_path):
    ours = apply_lora(make_tiny_hf_llama(), LoraConfig(r=4, alpha=8, dropout=0.05))
    randomize_lora(ours)
    ids = input_ids()
    expected = logits(ours, ids)
    save_adapter(ours, tmp_path / "adapter", base_model_name_or_path="tiny-llama")

    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert f.get_slice("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").get_shape() == [4, 64]
        assert f.get_slice("base_model.model.model.layers.1.self_attn.o_proj.lora_B.weight").get_shape() == [64, 4]
    assert keys == {f"base_model.model.model.layers.{i}.self_attn.{p}.{w}.weight"
                    for i in range(2) for p in ATTN for w in ("lora_A", "lora_B")}
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "tiny-llama" and cfg["r"] == 4 and cfg["lora_alpha"] == 8

    theirs = peft.PeftModel.from_pretrained(make_tiny_hf_llama(), str(tmp_path / "adapter")).eval()
    assert theirs.peft_config["default"].r == 4 and theirs.peft_config["default"].lora_dropout == 0.05
    torch.testing.assert_close(logits(theirs, ids), expected)
    assert not torch.allclose(logits(make_tiny_hf_llama(), ids), expected)  # the adapter does something


@pytest.mark.parametrize("targets, use_rslora", [(["q_proj", "v_proj"], False), (ATTN + MLP, True)])
def test_peft_adapter_with_nonzero_b_loads_in_ours(tmp_path, targets, use_rslora):
    theirs = _peft_model(targets, use_rslora=use_rslora)
    theirs.save_pretrained(str(tmp_path / "peft"))
    ids = input_ids()
    expected = logits(theirs, ids)
    ours = load_adapter(make_tiny_hf_llama(), tmp_path / "peft")
    assert len(lora_layers(ours)) == 2 * len(targets)
    torch.testing.assert_close(logits(ours, ids), expected)
    save_adapter(ours, tmp_path / "again")                     # and back to PEFT unchanged
    back = peft.PeftModel.from_pretrained(make_tiny_hf_llama(), str(tmp_path / "again")).eval()
    torch.testing.assert_close(logits(back, ids), expected)


def test_partial_layer_adapter_round_trips_through_peft(tmp_path):
    ours = apply_lora(make_tiny_hf_llama(), LoraConfig(r=2, target_modules=r"model\.layers\.1\.self_attn\.v_proj"))
    randomize_lora(ours)
    ids = input_ids()
    save_adapter(ours, tmp_path / "a")
    theirs = peft.PeftModel.from_pretrained(make_tiny_hf_llama(), str(tmp_path / "a")).eval()
    torch.testing.assert_close(logits(theirs, ids), logits(ours, ids))


def test_merged_export_loads_in_transformers_with_the_same_logits(tmp_path):
    theirs = _peft_model(ATTN + MLP)
    theirs.save_pretrained(str(tmp_path / "peft"))
    ids = input_ids()
    expected = logits(theirs, ids)
    model = merge_lora(load_adapter(make_tiny_hf_llama(), tmp_path / "peft"))
    model.save_pretrained(str(tmp_path / "merged"))
    reloaded = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "merged")).eval()
    torch.testing.assert_close(logits(reloaded, ids), expected)
    peft_merged = theirs.merge_and_unload()
    for name, p in peft_merged.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], p)


def test_lora_a_initialised_exactly_like_peft():
    ours, base = make_tiny_hf_llama(), make_tiny_hf_llama()
    torch.manual_seed(11)
    apply_lora(ours, LoraConfig(r=4, alpha=8))
    torch.manual_seed(11)
    theirs = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=ATTN))
    theirs_sd = {k.replace("base_model.model.", "", 1).replace(".default", ""): v
                 for k, v in theirs.state_dict().items() if ".lora_" in k}
    ours_sd = {k: v for k, v in ours.state_dict().items() if ".lora_" in k}
    assert ours_sd.keys() == theirs_sd.keys()
    for k in ours_sd:
        assert torch.equal(ours_sd[k], theirs_sd[k]), k


def test_mixed_dtype_matches_peft():
    theirs = _peft_model(ATTN)
    theirs.base_model.model.to(torch.bfloat16)
    for name, p in theirs.named_parameters():
        if ".lora_" in name:
            p.data = p.data.float()                            # PEFT's default: float32 adapter, bf16 base
    ours = make_tiny_hf_llama().to(torch.bfloat16)
    apply_lora(ours, LoraConfig(r=4, alpha=8, dropout=0.0))
    mine = ours.state_dict()
    with torch.no_grad():
        for k, v in theirs.state_dict().items():
            if ".lora_" in k:
                mine[k.replace("base_model.model.", "", 1).replace(".default", "")].copy_(v)
    assert lora_layers(ours)[0][1].lora_A.weight.dtype == torch.float32
    ids = input_ids()
    torch.testing.assert_close(logits(ours, ids), logits(theirs, ids))
