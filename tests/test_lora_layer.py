"""LoRALinear and LoraConfig: Eq. 2 by hand, initialisation, merge/unmerge, mixed dtype, validation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from lora import LoraConfig, LoraError, LoRALinear


def _layer(bias: bool = True, r: int = 4, alpha: float = 8, dtype=torch.float32, seed: int = 0,
           random_b: bool = True) -> LoRALinear:
    torch.manual_seed(seed)
    layer = LoRALinear(nn.Linear(24, 40, bias=bias, dtype=dtype), r=r, alpha=alpha)
    if random_b:
        with torch.no_grad():
            layer.lora_B.weight.normal_(0.0, 0.5)
    return layer


@pytest.mark.parametrize("bias", [True, False])
def test_forward_is_eq2_computed_by_hand(bias):
    layer = _layer(bias=bias)
    x = torch.randn(3, 5, 24)                                  # [B, T, k]
    w0, a, b = layer.weight, layer.lora_A.weight, layer.lora_B.weight
    w = w0 + (8 / 4) * (b @ a)                                 # W = W0 + (alpha / r) B A
    expected = x @ w.T + (layer.bias if bias else 0)
    torch.testing.assert_close(layer(x), expected)
    assert layer(x).shape == (3, 5, 40)
    assert a.shape == (4, 24) and b.shape == (40, 4)           # A in R^{r x k}, B in R^{d x r}


def test_init_equals_base_exactly_and_a_is_kaiming_uniform():
    torch.manual_seed(0)
    base = nn.Linear(24, 40)
    reference = nn.Linear(24, 40)
    reference.load_state_dict(base.state_dict())
    layer = LoRALinear(base, r=4, alpha=8)
    x = torch.randn(6, 24)
    assert torch.equal(layer(x), reference(x))
    assert torch.count_nonzero(layer.lora_B.weight) == 0
    bound = 1 / math.sqrt(24)                                  # kaiming_uniform(a=sqrt 5): U(-1/sqrt(k), 1/sqrt(k))
    assert layer.lora_A.weight.abs().max() <= bound and layer.lora_A.weight.std() > bound / 4
    assert layer.weight is base.weight and not layer.weight.requires_grad and not layer.bias.requires_grad


def test_state_dict_keys_keep_the_base_names():
    layer = _layer()
    assert set(layer.state_dict()) == {"weight", "bias", "lora_A.weight", "lora_B.weight"}


def test_rslora_scaling():
    layer = LoRALinear(nn.Linear(8, 8), r=4, alpha=8, use_rslora=True)
    assert layer.scaling == 8 / math.sqrt(4)
    assert LoraConfig(r=4, alpha=8, use_rslora=True).scaling == 4.0 and LoraConfig(r=4, alpha=8).scaling == 2.0


def test_merge_keeps_the_function_and_unmerge_restores_the_weights():
    layer = _layer()
    x = torch.randn(4, 24)
    w0 = layer.weight.detach().clone()
    y = layer(x)
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer.weight, w0 + layer.scaling * layer.lora_B.weight @ layer.lora_A.weight)
    torch.testing.assert_close(layer(x), y)
    merged_once = layer.weight.detach().clone()
    layer.merge()                                              # idempotent
    assert torch.equal(layer.weight, merged_once)
    layer.unmerge()
    assert not layer.merged
    torch.testing.assert_close(layer.weight, w0)
    w_back = layer.weight.detach().clone()
    layer.unmerge()                                            # idempotent
    assert torch.equal(layer.weight, w_back)
    torch.testing.assert_close(layer(x), y)


def test_merge_at_init_is_bit_exact():
    layer = _layer(random_b=False)
    w0 = layer.weight.detach().clone()
    layer.merge()
    assert torch.equal(layer.weight, w0)
    layer.unmerge()
    assert torch.equal(layer.weight, w0)


def test_forward_after_merge_skips_the_lora_path():
    layer = _layer()
    x = torch.randn(4, 24)
    layer.merge()
    y = layer(x)
    with torch.no_grad():
        layer.lora_A.weight.fill_(1e6)                         # would explode if the LoRA path ran
    assert torch.equal(layer(x), y)


def test_to_linear_computes_the_same_function():
    layer = _layer()
    x = torch.randn(4, 24)
    y = layer(x)
    linear = layer.to_linear()
    assert type(linear) is nn.Linear and linear.weight is layer.weight
    torch.testing.assert_close(linear(x), y)


def test_gradients_reach_only_a_and_b():
    layer = _layer()
    layer(torch.randn(4, 24)).square().sum().backward()
    assert layer.weight.grad is None and layer.bias.grad is None
    assert layer.lora_A.weight.grad.abs().sum() > 0 and layer.lora_B.weight.grad.abs().sum() > 0


def test_mixed_dtype_bf16_base_fp32_lora():
    layer = _layer(dtype=torch.bfloat16)
    assert layer.weight.dtype == torch.bfloat16 and layer.lora_A.weight.dtype == torch.float32
    x = torch.randn(2, 3, 24, dtype=torch.bfloat16)
    y = layer(x)
    assert y.dtype == torch.bfloat16 and y.shape == (2, 3, 40)
    base = nn.functional.linear(x, layer.weight, layer.bias)
    delta = (x.float() @ layer.lora_A.weight.T) @ layer.lora_B.weight.T * layer.scaling
    torch.testing.assert_close(y, (base + delta).to(torch.bfloat16))
    y.float().sum().backward()
    assert layer.lora_A.weight.grad.dtype == torch.float32 and layer.weight.grad is None
    layer.merge()                                              # merged in float32, rounded once to bf16
    torch.testing.assert_close(layer(x), y.detach(), atol=0.1, rtol=0.02)


def test_dropout_touches_only_the_lora_path():
    torch.manual_seed(0)
    base = nn.Linear(24, 40)
    layer = LoRALinear(base, r=4, alpha=8, dropout=0.5).train()
    x = torch.randn(8, 24)
    assert torch.equal(layer(x), base(x))                      # B = 0: dropout cannot show
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    assert not torch.equal(layer(x), layer.eval()(x))


@pytest.mark.parametrize("fields, words", [
    ({"r": 0}, "r must be a positive integer"),
    ({"r": 2.5}, "r must be a positive integer"),
    ({"r": True}, "r must be a positive integer"),
    ({"lora_alpha": -1}, "lora_alpha must be a positive number"),
    ({"lora_dropout": 1.0}, "lora_dropout must be a number in [0, 1)"),
    ({"target_modules": []}, "target_modules must be a non-empty list"),
    ({"target_modules": ["q_proj", ""]}, "target_modules must be a non-empty list"),
    ({"target_modules": "(q_proj"}, "regex '(q_proj' is invalid"),
])
def test_adapter_config_checks_are_one_clear_line(fields, words):
    """r / alpha / dropout / targets are checked where they enter from a file (adapter_config.json)."""
    with pytest.raises(LoraError) as info:
        LoraConfig.from_peft_dict({**LoraConfig().to_peft_dict(), **fields})
    assert words in str(info.value) and "\n" not in str(info.value)


def test_config_peft_dict_round_trip_and_refusals():
    config = LoraConfig(r=16, alpha=32, dropout=0.1, target_modules=["q_proj", "v_proj", "q_proj"])
    assert config.target_modules == ("q_proj", "v_proj")
    d = config.to_peft_dict("meta-llama/Llama-2-7b-chat-hf")
    assert d["peft_type"] == "LORA" and d["task_type"] == "CAUSAL_LM" and d["lora_alpha"] == 32
    assert d["bias"] == "none" and d["fan_in_fan_out"] is False and d["target_modules"] == ["q_proj", "v_proj"]
    assert LoraConfig.from_peft_dict(d) == config and d["use_dora"] is False
    dora = LoraConfig(r=4, use_dora=True)
    assert dora.to_peft_dict()["use_dora"] is True and LoraConfig.from_peft_dict(dora.to_peft_dict()) == dora
    for bad, words in [({"use_dora": "yes"}, "use_dora must be true or false"),
                       ({"lora_bias": True}, "lora_bias=True is not supported"),
                       ({"bias": "all"}, "bias='all' is not supported"),
                       ({"peft_type": "IA3"}, "only 'LORA'"),
                       ({"r": "8"}, "r must be a positive integer")]:
        with pytest.raises(LoraError) as info:
            LoraConfig.from_peft_dict({**d, **bad})
        assert words in str(info.value)
    with pytest.raises(LoraError, match="missing field"):
        LoraConfig.from_peft_dict({"peft_type": "LORA", "r": 8})
