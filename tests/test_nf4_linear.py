"""`NF4Linear` (a frozen 4-bit base) and `LoRALinear` wrapping it exactly as it wraps `nn.Linear`."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lora import LoraConfig, LoRALinear, apply_lora, lora_layers, trainable_summary
from lora.errors import LoraError
from minillama.nf4 import NF4Linear, quantize_model
from minillama.nf4.quantize import quantize_nf4


def _linear(in_f=96, out_f=80, bias=False, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Linear(in_f, out_f, bias=bias).to(dtype)


def _x(*shape, seed=1, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("double_quant", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_and_input_gradient_equal_the_dequantised_dense_layer(double_quant, bias):
    linear = _linear(bias=bias)
    q = NF4Linear.from_linear(linear, double_quant=double_quant)
    dense = q.dequantize()
    assert torch.equal(dense, quantize_nf4(linear.weight, double_quant).dequantize())
    x = _x(2, 5, 96).requires_grad_()
    y = q(x)
    torch.testing.assert_close(y, nn.functional.linear(x, dense, linear.bias), rtol=0, atol=0)
    g = _x(2, 5, 80, seed=2)
    y.backward(g)
    torch.testing.assert_close(x.grad, g @ dense, rtol=1e-6, atol=1e-6)
    assert list(q.parameters()) == ([q.bias] if bias else []) and all(not p.requires_grad for p in q.parameters())


def test_bfloat16_compute_matches_dense_bfloat16():
    linear = _linear(dtype=torch.bfloat16)
    q = NF4Linear.from_linear(linear)
    assert q.compute_dtype == torch.bfloat16
    x = _x(3, 96, dtype=torch.float32)  # other input dtypes are cast to the compute dtype
    y = q(x)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y, nn.functional.linear(x.bfloat16(), q.dequantize()))


def test_backward_keeps_no_dequantised_weight():
    q = NF4Linear.from_linear(_linear(256, 512))
    saved = []
    x = _x(4, 256).requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = q(x)
    assert not any(t.numel() >= 256 * 512 for t in saved)  # no [out, in] tensor is held for backward
    y.sum().backward()
    assert x.grad is not None


def test_casting_keeps_the_4bit_storage_and_moving_moves_it():
    q = NF4Linear.from_linear(_linear(bias=True))
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q.to(torch.bfloat16)
    assert q.compute_dtype == torch.bfloat16 and q.bias.dtype == torch.bfloat16
    assert q.packed.dtype == torch.uint8 and q.absmax.dtype == torch.uint8 and q.nested_absmax.dtype == torch.float32
    for k in ("packed", "absmax", "nested_absmax", "nested_offset"):
        assert torch.equal(q.state_dict()[k], before[k])
    q.half().float()
    assert q.compute_dtype == torch.float32 and torch.equal(q.packed, before["packed"])
    q.to("meta")
    assert q.packed.is_meta and q.absmax.is_meta


def test_state_dict_round_trip():
    q = NF4Linear.from_linear(_linear())
    fresh = NF4Linear(96, 80)
    fresh.load_state_dict(q.state_dict())
    x = _x(3, 96)
    assert torch.equal(fresh(x), q(x))
    assert set(q.state_dict()) == {"packed", "absmax", "nested_absmax", "nested_offset"}
    assert set(NF4Linear(96, 80, double_quant=False).state_dict()) == {"packed", "absmax"}


def _lora_pair(dtype=torch.float32, bias=False, dropout=0.0):
    """LoRALinear on an NF4 base, and on an nn.Linear holding the same dequantised weight, same A and B."""
    linear = _linear(bias=bias, dtype=dtype)
    q = NF4Linear.from_linear(linear)
    dense = nn.Linear(96, 80, bias=bias).to(dtype)
    with torch.no_grad():
        dense.weight.copy_(q.dequantize())
        if bias:
            dense.bias.copy_(linear.bias)
    torch.manual_seed(3)
    ours = LoRALinear(q, r=4, alpha=8, dropout=dropout)
    torch.manual_seed(3)
    ref = LoRALinear(dense, r=4, alpha=8, dropout=dropout)
    with torch.no_grad():
        for layer in (ours, ref):
            layer.lora_B.weight.copy_(torch.randn(80, 4, generator=torch.Generator().manual_seed(4)) * 0.1)
    return ours, ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lora_wraps_nf4_exactly_as_it_wraps_linear(dtype):
    ours, ref = _lora_pair(dtype, bias=True)
    assert ours.quantized and ours.weight is None and isinstance(ours.base_layer, NF4Linear)
    assert ours.lora_A.weight.dtype == ours.lora_B.weight.dtype == torch.float32
    assert torch.equal(ours.lora_A.weight, ref.lora_A.weight)
    x = _x(2, 7, 96, dtype=dtype)
    assert torch.equal(ours(x), ref(x))
    ours(x).float().sum().backward()
    ref(x).float().sum().backward()
    assert torch.equal(ours.lora_A.weight.grad, ref.lora_A.weight.grad)
    assert torch.equal(ours.lora_B.weight.grad, ref.lora_B.weight.grad)
    assert [n for n, p in ours.named_parameters() if p.requires_grad] == ["lora_A.weight", "lora_B.weight"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merge_dequantises_and_unmerge_is_exact(dtype):
    ours, ref = _lora_pair(dtype)
    x = _x(4, 96, dtype=dtype)
    before = ours(x)
    storage = {k: v.clone() for k, v in ours.base_layer.state_dict().items()}
    ours.merge()
    ref.merge()
    assert ours.merged and ours.weight.dtype == dtype and not ours.weight.requires_grad
    merged = (ours.base_layer.dequantize(torch.float32) + ours.delta_weight()).to(dtype)  # one rounding
    assert torch.equal(ours.weight, merged)
    if dtype == torch.float32:  # a 16-bit dense base was rounded once already: the 4-bit merge skips that
        assert torch.equal(ours.weight, ref.weight) and torch.equal(ours(x), ref(x))
    torch.testing.assert_close(ours(x), before, **({} if dtype == torch.float32 else {"atol": 0.02, "rtol": 0.02}))
    ours.unmerge()
    assert ours.weight is None and not ours.merged and torch.equal(ours(x), before)  # exact: W0 never changed
    assert all(torch.equal(v, storage[k]) for k, v in ours.base_layer.state_dict().items())
    linear = ours.to_linear()
    assert isinstance(linear, nn.Linear) and torch.equal(linear.weight, merged)


def test_apply_lora_on_a_quantised_model_trains_only_a_and_b():
    model = nn.Sequential()
    model.add_module("q_proj", _linear(96, 96))
    model.add_module("lm_head", _linear(96, 50, seed=5))
    total_float = trainable_summary(model).total
    quantize_model(model)
    assert isinstance(model.q_proj, NF4Linear) and isinstance(model.lm_head, nn.Linear)  # lm_head stays dense
    apply_lora(model, LoraConfig(r=4, target_modules=("q_proj",)))
    summary = trainable_summary(model)
    assert summary.total == total_float + 4 * (96 + 96)  # 4-bit values counted as PEFT counts Params4bit
    assert summary.trainable == 4 * (96 + 96)
    assert [n for n, _ in lora_layers(model)] == ["q_proj"]
    with pytest.raises(LoraError, match="not an nn.Linear"):
        apply_lora(nn.Sequential(nn.ReLU()), LoraConfig(target_modules=("0",)))
