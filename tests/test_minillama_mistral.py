"""Mistral 7B next to Llama-2: the same decoder with GQA, rope_theta 1e6 and a sliding attention window,
equal to transformers' MistralForCausalLM on tiny random checkpoints it wrote (window 8, longer sequences)."""
from __future__ import annotations

import json

import pytest
import torch

from _minillama_util import greedy_left_padded_equals_transformers
from conftest import random_hf_model
from minillama import Llama, LlamaConfig, MiniLlamaError, left_pad
from minillama.kv_cache import make_cache
from minillama.masks import build_attention_mask

# mistralai/Mistral-7B-v0.1's config.json (as published on the Hub).
MISTRAL_7B_V01 = {
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768,
    "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "use_cache": True, "vocab_size": 32000}
WINDOW = 8


def make_tiny_hf_mistral(out_dir=None, *, seed: int = 0, sliding_window: int | None = WINDOW, **extra):
    """A random `transformers.MistralForCausalLM` (float32, eval mode), GQA and rope_theta 1e6."""
    transformers = pytest.importorskip("transformers")
    config = transformers.MistralConfig(
        vocab_size=128, hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=1e6,
        sliding_window=sliding_window, bos_token_id=1, eos_token_id=2, pad_token_id=0, **extra)
    return random_hf_model(transformers.MistralForCausalLM, config, out_dir, seed=seed)


def _pair(**overrides):
    hf = make_tiny_hf_mistral(**overrides)
    model = Llama(LlamaConfig.from_hf_dict(hf.config.to_dict())).eval()
    model.load_state_dict(hf.state_dict())
    return hf, model


def test_config_of_mistral_7b():
    cfg = LlamaConfig.from_hf_dict(MISTRAL_7B_V01)
    assert (cfg.model_type, cfg.sliding_window, cfg.num_key_value_heads, cfg.head_dim) == ("mistral", 4096, 8, 128)
    assert LlamaConfig.from_hf_dict(cfg.to_hf_dict()) == cfg
    v02 = LlamaConfig.from_hf_dict({**MISTRAL_7B_V01, "sliding_window": None, "rope_theta": 1e6})  # v0.2 / v0.3
    assert (v02.sliding_window, v02.rope_theta) == (None, 1e6)
    no_key = {k: v for k, v in MISTRAL_7B_V01.items() if k != "sliding_window"}
    assert LlamaConfig.from_hf_dict(no_key).sliding_window == 4096  # MistralConfig's default


@pytest.mark.parametrize("window", [WINDOW, None])
def test_logits_equal_transformers(tmp_path, window):
    hf = make_tiny_hf_mistral(tmp_path, sliding_window=window)
    model = Llama.from_pretrained(tmp_path)
    assert (model.config.model_type, model.config.sliding_window) == ("mistral", window)
    ids = torch.randint(0, 128, (3, 29), generator=torch.Generator().manual_seed(1))  # 29 > window
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits)


def test_the_window_changes_the_logits():
    hf, model = _pair()
    full = Llama(model.config.replace(sliding_window=None)).eval()
    full.load_state_dict(model.state_dict())
    ids = torch.randint(0, 128, (1, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(full(ids)[:, :WINDOW], hf(ids).logits[:, :WINDOW])  # inside the window
        assert not torch.allclose(full(ids)[:, WINDOW:], hf(ids).logits[:, WINDOW:])


def test_window_mask_is_transformers_overlay():
    mask = build_attention_mask(None, 0, 12, torch.device("cpu"), sliding_window=4)[0, 0]  # [T, S]
    q, k = torch.arange(12)[:, None], torch.arange(12)[None, :]
    assert torch.equal(mask, (k <= q) & (k > q - 4))  # masking_utils: causal and kv_idx > q_idx - window
    assert build_attention_mask(None, 0, 4, torch.device("cpu"), sliding_window=4) is None  # all inside: SDPA causal


def test_padded_batches_equal_transformers():
    hf, model = _pair()
    g = torch.Generator().manual_seed(3)
    ids, mask = left_pad([torch.randint(3, 128, (n,), generator=g).tolist() for n in (21, 5, 14)], pad_id=0)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():  # left padding (generation)
        ours, ref = model(ids, attention_mask=mask), hf(ids, attention_mask=mask, position_ids=positions).logits
        torch.testing.assert_close(ours[mask.bool()], ref[mask.bool()])
        right = torch.zeros_like(ids)  # right padding (training)
        rmask = torch.zeros_like(mask)
        for i, n in enumerate(mask.sum(-1).tolist()):
            right[i, :n], rmask[i, :n] = ids[i, -n:], 1
        ours, ref = model(right, attention_mask=rmask), hf(right, attention_mask=rmask).logits
        torch.testing.assert_close(ours[rmask.bool()], ref[rmask.bool()])


def test_kv_cache_decode_equals_full_forward():
    hf, model = _pair()
    ids = torch.randint(0, 128, (2, 20), generator=torch.Generator().manual_seed(4))
    cache = make_cache(model.config, 2, 20, torch.float32, "cpu")
    with torch.no_grad():
        parts = [model(ids[:, :5], cache=cache), model(ids[:, 5:12], cache=cache, start_pos=5)]
        parts += [model(ids[:, i:i + 1], cache=cache, start_pos=i) for i in range(12, 20)]
        torch.testing.assert_close(torch.cat(parts, dim=1), hf(ids).logits)


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_greedy_left_padded_batch_equals_transformers(cuda_graph):
    hf, model = _pair()
    prompts, ours = greedy_left_padded_equals_transformers(hf, model, 5, (13, 2, 9), 3, 128, 25, cuda_graph)
    alone = model.generate(torch.tensor([prompts[1]]), max_new_tokens=25, eos_id=None)
    assert ours[1, -25:].tolist() == alone[0, -25:].tolist()


def test_save_pretrained_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = make_tiny_hf_mistral(tmp_path / "src")
    out = Llama.from_pretrained(tmp_path / "src").save_pretrained(tmp_path / "out")
    saved = json.loads((out / "config.json").read_text())
    assert (saved["model_type"], saved["architectures"], saved["sliding_window"]) == (
        "mistral", ["MistralForCausalLM"], WINDOW)
    back = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(back).__name__ == "MistralForCausalLM" and back.config.sliding_window == WINDOW
    ids = torch.randint(0, 128, (2, 19), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, hf(ids).logits)


@pytest.mark.parametrize("change, words", [
    ({"sliding_window": 0}, "sliding_window must be a positive integer, got 0"),
    ({"sliding_window": "4096"}, "sliding_window must be an integer"),
    ({"layer_types": ["sliding_attention", "full_attention"]}, "layer_types"),
    ({"architectures": ["LlamaForCausalLM"]}, "is not a Llama decoder"),
    ({"model_type": "mixtral", "architectures": ["MixtralForCausalLM"]}, "model_type='mixtral'"),
])
def test_unsupported_mistral_configs_are_one_line(change, words):
    with pytest.raises(MiniLlamaError) as exc:
        LlamaConfig.from_hf_dict({**MISTRAL_7B_V01, **change}, source="m/config.json")
    assert str(exc.value).startswith("m/config.json: ") and words in str(exc.value) and "\n" not in str(exc.value)
