"""QLoRA on minillama: loading straight into NF4 equals transformers + bitsandbytes 4-bit, training changes
only A and B, the adapter loads in PEFT on a bitsandbytes 4-bit base, `lora merge --quantize nf4`."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from _lora_util import input_ids, logits, make_tiny_hf_llama, randomize_lora, snapshot
from lora import LoraConfig, apply_lora, lora_layers, save_adapter
from lora.cli import main as lora_main
from minillama.nf4 import NF4Linear
from minillama import Llama, MiniLlamaError

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
pytest.importorskip("bitsandbytes")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny float32 Llama (GQA); widths are multiples of 32, which bitsandbytes' CPU 4-bit matmul needs."""
    path = tmp_path_factory.mktemp("nf4") / "base"
    make_tiny_hf_llama(path, intermediate_size=128, num_key_value_heads=2)
    return path


def _bnb(base_dir, dtype, double_quant):
    """transformers + bitsandbytes 4-bit, in train mode: that is QLoRA's path (dequantise, then matmul). In eval
    mode without gradients, bitsandbytes' CPU build repacks the weights for a bf16 AVX512 kernel instead
    (inference only; 3e-3 off in float32). Llama has no dropout, so train mode changes nothing else."""
    config = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                             bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=double_quant)
    return transformers.LlamaForCausalLM.from_pretrained(str(base_dir), quantization_config=config,
                                                         device_map="cpu", dtype=dtype).train()


def _same_storage(ours: nn.Module, theirs: nn.Module) -> None:
    """Our NF4 bytes equal bitsandbytes' layer by layer; its 8-bit absmax codes are replaced by ours, which
    differ (tests/test_nf4_quantize.py) only where its CPU kernel's 65536-point grid rounds differently."""
    for name, m in ours.named_modules():
        if isinstance(m, NF4Linear):
            weight = theirs.get_submodule(name.replace(".base_layer", "")).weight
            assert torch.equal(weight.view(-1), m.packed), name
            if m.double_quant:
                assert torch.equal(weight.quant_state.offset, m.nested_offset)
                weight.quant_state.absmax = m.absmax.clone()
            else:
                assert torch.equal(weight.quant_state.absmax, m.absmax)


def test_loads_straight_into_nf4(base_dir):
    model = Llama.from_pretrained(base_dir, quantize="nf4")
    assert model.dtype == torch.float32  # the CPU compute dtype (bfloat16 on CUDA)
    quantized = {n for n, m in model.named_modules() if isinstance(m, NF4Linear)}
    assert quantized == {f"model.layers.{i}.{'mlp' if p in ('gate_proj', 'up_proj', 'down_proj') else 'self_attn'}.{p}"
                         for i in range(2) for p in PROJ}
    assert isinstance(model.lm_head, nn.Linear) and model.lm_head.weight.dtype == torch.float32
    assert not any(k.endswith("_proj.weight") for k in model.state_dict())  # no dense copy of a projection
    bf16 = Llama.from_pretrained(base_dir, dtype="bfloat16", quantize="nf4", double_quant=False)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert all(m.compute_dtype == torch.bfloat16 and not m.double_quant
               for m in bf16.modules() if isinstance(m, NF4Linear))


@pytest.mark.parametrize("dtype, double_quant", [
    (torch.float32, True), (torch.bfloat16, False),
    pytest.param(torch.float32, False, marks=pytest.mark.slow),
    pytest.param(torch.bfloat16, True, marks=pytest.mark.slow)])
def test_logits_equal_transformers_with_bitsandbytes_4bit(base_dir, dtype, double_quant):
    ours = Llama.from_pretrained(base_dir, dtype=dtype, quantize="nf4", double_quant=double_quant)
    theirs = _bnb(base_dir, dtype, double_quant)
    _same_storage(ours, theirs)
    ids = input_ids(2, 11)
    torch.testing.assert_close(logits(ours, ids), logits(theirs, ids))  # float32: 1.3e-6 rel; bf16: 1.6e-2 rel


def _float_twin(base_dir, quantized: Llama) -> Llama:
    """A float32 Llama whose linear weights are our dequantised NF4 weights."""
    twin = Llama.from_pretrained(base_dir, dtype="float32")
    with torch.no_grad():
        for name, m in quantized.named_modules():
            if isinstance(m, NF4Linear):
                twin.get_submodule(name.replace(".base_layer", "")).weight.copy_(m.dequantize(torch.float32))
    return twin


def test_training_steps_change_only_a_and_b_with_the_float_models_gradients(base_dir):
    config = LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=tuple(PROJ))
    model = Llama.from_pretrained(base_dir, quantize="nf4")
    twin = _float_twin(base_dir, model)
    for m in (model, twin):
        torch.manual_seed(0)
        apply_lora(m, config).train()
        randomize_lora(m)
    ids = input_ids(2, 9)
    grads = []
    for m in (model, twin):
        out = m(ids)  # [B, T, vocab]
        nn.functional.cross_entropy(out[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
        grads.append({n: p.grad for n, p in m.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 2 * 7 * 2
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], msg=name)
    before = snapshot(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.step()
        opt.zero_grad()
        out = model(ids)
        nn.functional.cross_entropy(out[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(".lora_A." in k or ".lora_B." in k for k in changed)


@pytest.mark.parametrize("double_quant", [pytest.param(False, marks=pytest.mark.slow), True])
def test_adapter_from_an_nf4_model_loads_in_peft_on_a_bitsandbytes_4bit_base(tmp_path, base_dir, double_quant):
    model = Llama.from_pretrained(base_dir, quantize="nf4", double_quant=double_quant)
    apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj", "down_proj")))
    randomize_lora(model)
    model.eval()
    save_adapter(model, tmp_path / "adapter", base_model_name_or_path=str(base_dir))
    base = _bnb(base_dir, torch.float32, double_quant)
    _same_storage(model, base)
    theirs = peft.PeftModel.from_pretrained(base, str(tmp_path / "adapter")).train()  # see _bnb
    assert type(theirs.base_model.model.model.layers[0].self_attn.q_proj).__module__.startswith("peft.tuners.lora.bnb")
    torch.testing.assert_close(logits(theirs, input_ids()), logits(model, input_ids()))


@pytest.mark.parametrize("dtype, double_quant", [
    ("float32", True), ("bfloat16", True), pytest.param("float32", False, marks=pytest.mark.slow)])
def test_merge_cli_quantize_nf4_writes_dense_weights(tmp_path, base_dir, dtype, double_quant, capsys):
    model = Llama.from_pretrained(base_dir, dtype=dtype, quantize="nf4", double_quant=double_quant)
    apply_lora(model, LoraConfig(r=4, alpha=8))
    randomize_lora(model)
    model.eval()
    save_adapter(model, tmp_path / "adapter")
    out = tmp_path / "merged"
    args = ["merge", "--base", str(base_dir), "--adapter", str(tmp_path / "adapter"), "--out", str(out),
            "--quantize", "nf4"] + (["--dtype", "float32"] if dtype == "float32" else []) \
        + ([] if double_quant else ["--no-double-quant"])  # --dtype auto: bfloat16
    assert lora_main(args) == 0, capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == dtype
    merged = transformers.LlamaForCausalLM.from_pretrained(str(out), dtype=getattr(torch, dtype)).eval()
    assert {p.dtype for p in merged.parameters()} == {getattr(torch, dtype)}
    tolerance = {} if dtype == "float32" else {"atol": 0.05, "rtol": 0.05}  # bf16: merged once vs two roundings
    torch.testing.assert_close(logits(merged, input_ids()), logits(model, input_ids()), **tolerance)
    for name, layer in lora_layers(model):  # merged weight = dequant(W0) + dW, rounded once
        expected = (layer.base_layer.dequantize(torch.float32) + layer.delta_weight()).to(getattr(torch, dtype))
        assert torch.equal(merged.get_submodule(name).weight, expected), name


def test_unsupported_combinations_are_refused_in_one_line(tmp_path, base_dir):
    with pytest.raises(MiniLlamaError, match=r"^quantize='int8' is not supported \(None or 'nf4'\)$"):
        Llama.from_pretrained(base_dir, quantize="int8")
    model = Llama.from_pretrained(base_dir, quantize="nf4")
    with pytest.raises(MiniLlamaError, match="4-bit NF4 layers; merge LoRA .* dequantise them first"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_activation_checkpointing_gives_the_same_gradients(base_dir):
    model = Llama.from_pretrained(base_dir, quantize="nf4")
    apply_lora(model, LoraConfig(r=2, dropout=0.0)).train()
    randomize_lora(model)
    ids = input_ids(1, 7)
    grads = []
    for checkpointing in (False, True):
        model.gradient_checkpointing_enable(checkpointing)
        model.zero_grad()
        model(ids).sum().backward()  # the 4-bit layers are dequantised again in the recomputation
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    assert all(torch.equal(a, b) for a, b in zip(*grads))
