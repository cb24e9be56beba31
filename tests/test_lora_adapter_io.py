"""save_adapter / load_adapter: round trip, atomic checked writes, and every bad input refused untouched."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import lora.adapter_io as adapter_io
from _lora_util import assert_same_state, input_ids, logits, make_tiny_hf_llama, randomize_lora, snapshot
from lora import LoraConfig, LoraError, apply_lora, load_adapter, lora_layers, save_adapter

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
Q0A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"


@pytest.fixture
def adapter(tmp_path):
    """A saved adapter (r=4, alpha=8, q/k/v/o, random A and B) and the logits it gives."""
    model = apply_lora(make_tiny_hf_llama(), LoraConfig(r=4, alpha=8, dropout=0.0))
    randomize_lora(model)
    save_adapter(model, tmp_path / "adapter")
    return tmp_path / "adapter", logits(model, input_ids())


def test_round_trip_gives_the_same_logits_and_tensors(adapter):
    path, expected = adapter
    model = load_adapter(make_tiny_hf_llama(), path)
    torch.testing.assert_close(logits(model, input_ids()), expected)
    saved = load_file(str(path / WEIGHTS))
    for name, layer in lora_layers(model):
        assert torch.equal(saved[f"base_model.model.{name}.lora_A.weight"], layer.lora_A.weight)
    assert sorted(p.name for p in path.iterdir()) == [CONFIG, WEIGHTS]  # no temporary files left


def test_load_into_a_model_with_the_same_lora_resumes(adapter):
    path, expected = adapter
    model = apply_lora(make_tiny_hf_llama(), LoraConfig(r=4, alpha=8, dropout=0.0))
    load_adapter(model, path)
    torch.testing.assert_close(logits(model, input_ids()), expected)


def test_save_without_lora_is_refused(tmp_path):
    with pytest.raises(LoraError, match="no LoRA layers"):
        save_adapter(make_tiny_hf_llama(), tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_a_failed_save_keeps_the_previous_adapter(adapter, monkeypatch):
    path, _ = adapter
    old = {p.name: p.read_bytes() for p in path.iterdir()}
    model = apply_lora(make_tiny_hf_llama(), LoraConfig(r=4, alpha=8))
    randomize_lora(model, seed=9)
    monkeypatch.setattr(adapter_io, "load_file", lambda *_: {})   # the write "lost" every tensor
    with pytest.raises(LoraError, match="re-read adapter does not hold the 16 tensors"):
        save_adapter(model, path)
    assert {p.name: p.read_bytes() for p in path.iterdir()} == old


def _corrupt(path, how):
    """Damage the adapter at `path` in one way; return the words the error must contain."""
    cfg = json.loads((path / CONFIG).read_text())
    tensors = load_file(str(path / WEIGHTS))
    if how == "no directory":
        return path.parent / "nope", "adapter directory not found"
    if how == "missing config":
        (path / CONFIG).unlink()
        return path, f"{CONFIG}: missing"
    if how == "malformed config":
        (path / CONFIG).write_text('{"r": 8,')
        return path, f"{CONFIG}: malformed JSON"
    if how == "config not an object":
        (path / CONFIG).write_text("[1, 2]")
        return path, "expected a JSON object"
    if how == "wrong rank":
        cfg["r"] = 8
    elif how == "unknown target":
        cfg["target_modules"] = ["q_proj", "qkv_proj"]
        (path / CONFIG).write_text(json.dumps(cfg))
        return path, "'qkv_proj' matches no module of LlamaForCausalLM"
    elif how == "dora":  # a DoRA config without its magnitude vectors
        cfg["use_dora"] = True
        (path / CONFIG).write_text(json.dumps(cfg))
        return path, "implies, e.g. base_model.model.model.layers.0.self_attn.k_proj.lora_magnitude_vector"
    elif how == "another model":
        tensors = {k.replace("model.layers.", "transformer.h."): v for k, v in tensors.items()}
    elif how == "missing tensor":
        del tensors[Q0A]
    elif how == "another size":
        tensors[Q0A] = torch.zeros(4, 48)
    elif how == "extra module":
        tensors[Q0A.replace("self_attn.q_proj", "mlp.up_proj")] = torch.zeros(4, 64)
    elif how == "nan":
        tensors[Q0A] = torch.full((4, 64), float("nan"))
    elif how == "empty weights":
        tensors = {}
    elif how == "corrupt weights":
        (path / WEIGHTS).write_bytes(b"\x00garbage")
        return path, f"{WEIGHTS}: not a readable adapter weights file"
    (path / CONFIG).write_text(json.dumps(cfg))
    (path / WEIGHTS).unlink()
    save_file(tensors, str(path / WEIGHTS))
    return path, {
        "wrong rank": f"has rank 4 but {CONFIG} says r=8",
        "another model": "names no LoRA weight of this LlamaForCausalLM (an adapter for another model?)",
        "missing tensor": f"lacks 1 of the 16 tensors that {CONFIG} implies, e.g. {Q0A}",
        "another size": "has shape [4, 48], this model needs [4, 64]",
        "extra module": "adapts model.layers.0.mlp.up_proj, which target_modules",
        "nan": "is not a finite floating-point tensor",
        "empty weights": "holds no tensors (an empty adapter)",
    }[how]


@pytest.mark.parametrize("how", [
    "no directory", "missing config", "malformed config", "config not an object", "wrong rank",
    "unknown target", "dora", "another model", "missing tensor", "another size", "extra module", "nan",
    "empty weights", "corrupt weights"])
def test_bad_adapter_is_one_clear_line_and_nothing_changes(adapter, how):
    path, words = _corrupt(adapter[0], how)
    model = make_tiny_hf_llama()
    before = snapshot(model)
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(LoraError) as info:
        load_adapter(model, path)
    message = str(info.value)
    assert words in message and "\n" not in message
    assert message.startswith(str(path)), message                # names the file (or the folder)
    assert not lora_layers(model)
    assert grads == {n: p.requires_grad for n, p in model.named_parameters()}
    assert_same_state(model, before)


def test_adapter_that_does_not_fit_existing_lora_is_refused(adapter):
    path, _ = adapter
    model = apply_lora(make_tiny_hf_llama(), LoraConfig(r=2, alpha=8))
    before = snapshot(model)
    with pytest.raises(LoraError, match=r"does not fit the model's LoRA layers \(r=2"):
        load_adapter(model, path)
    assert_same_state(model, before)


def test_legacy_bin_adapter_loads_with_weights_only(adapter, tmp_path):
    path, expected = adapter
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / CONFIG).write_bytes((path / CONFIG).read_bytes())
    torch.save(load_file(str(path / WEIGHTS)), legacy / "adapter_model.bin")
    model = load_adapter(make_tiny_hf_llama(), legacy)
    torch.testing.assert_close(logits(model, input_ids()), expected)
