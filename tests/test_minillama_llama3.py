"""Llama-3.x next to Llama-2: frequency-dependent RoPE scaling ("llama3"), tied embeddings, a 128k vocabulary
and several EOS ids, each equal to transformers on tiny random checkpoints it wrote."""
from __future__ import annotations

import json

import pytest
import torch

from _minillama_util import greedy_left_padded_equals_transformers
from conftest import random_hf_model
from minillama import Llama, LlamaConfig, MiniLlamaError, RopeScaling, finish_reasons, left_pad

# Llama-3.1 with a short original context, so that the tiny head's 8 frequencies fall in all three bands
# (kept / interpolated / divided by the factor; see test_rope_frequencies_equal_transformers).
SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 64}

# meta-llama/Llama-3.1-8B-Instruct's config.json (as published on the Hub; transformers 4.43 layout).
LLAMA31_8B_INSTRUCT = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "use_cache": True,
    "vocab_size": 128256}


def make_tiny_hf_llama3(out_dir=None, *, seed: int = 0, vocab_size: int = 160, tied: bool = True,
                        eos_token_id=(2, 3), scaling: dict | None = SCALING, **extra):
    """A random `transformers.LlamaForCausalLM` with Llama-3's differences (float32, eval mode)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=tied, max_position_embeddings=256, rms_norm_eps=1e-5,
        rope_theta=500000.0, rope_scaling=scaling, bos_token_id=1, eos_token_id=list(eos_token_id),
        pad_token_id=0, **extra)
    return random_hf_model(transformers.LlamaForCausalLM, config, out_dir, seed=seed)


def test_config_of_llama31_8b_instruct():
    cfg = LlamaConfig.from_hf_dict(LLAMA31_8B_INSTRUCT)
    assert cfg.rope_scaling == RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                           original_max_position_embeddings=8192)
    assert (cfg.eos_token_id, cfg.eos_token_ids) == (128001, (128001, 128008, 128009))
    assert (cfg.head_dim, cfg.num_key_value_heads, cfg.rope_theta, cfg.vocab_size) == (128, 8, 500000.0, 128256)
    assert cfg.model_type == "llama" and cfg.sliding_window is None
    assert LlamaConfig.from_hf_dict(cfg.to_hf_dict()) == cfg
    assert LlamaConfig.from_hf_dict(json.loads(json.dumps(cfg.to_hf_dict()))) == cfg
    assert cfg.replace(eos_token_id=128009).eos_token_ids == (128009,)


def test_config_round_trips_through_transformers():
    transformers = pytest.importorskip("transformers")
    cfg = LlamaConfig.from_hf_dict(LLAMA31_8B_INSTRUCT)
    hf = transformers.LlamaConfig(**cfg.to_hf_dict())
    assert hf.rope_parameters["rope_type"] == "llama3" and hf.rope_parameters["factor"] == 8.0
    assert hf.eos_token_id == [128001, 128008, 128009]
    assert LlamaConfig.from_hf_dict(hf.to_dict()).replace(torch_dtype="bfloat16") == cfg  # 5.x: rope_parameters


def test_rope_frequencies_equal_transformers():
    pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from minillama.rope import RotaryEmbedding

    hf = make_tiny_hf_llama3()
    ref_inv_freq, scale = ROPE_INIT_FUNCTIONS["llama3"](hf.config, "cpu")
    ours = RotaryEmbedding(16, 300, 500000.0, scaling=LlamaConfig.from_hf_dict(hf.config.to_dict()).rope_scaling)
    plain = 1.0 / 500000.0 ** (torch.arange(0, 16, 2).float() / 16)
    ratio = plain / ref_inv_freq
    assert scale == 1.0 and ratio[0] == 1.0 and ratio[-1] == 8.0 and ((ratio > 1) & (ratio < 8)).any()  # 3 bands
    positions = torch.arange(300).float()
    emb = torch.cat([torch.outer(positions, ref_inv_freq)] * 2, dim=-1)  # [P, hd]: transformers' table
    torch.testing.assert_close(ours.cos_cached, emb.cos(), rtol=0, atol=0)
    torch.testing.assert_close(ours.sin_cached, emb.sin(), rtol=0, atol=0)


@pytest.mark.parametrize("case", [
    dict(tied=True), dict(tied=False), pytest.param(dict(tied=True, vocab_size=128256), marks=pytest.mark.slow),
    dict(tied=True, scaling={**SCALING, "factor": 32.0}),  # Llama-3.2 1B / 3B: factor 32, tied
    dict(tied=False, scaling=None),  # Llama-3.0: rope_theta 500000, no scaling
])
def test_logits_equal_transformers(tmp_path, case):
    hf = make_tiny_hf_llama3(tmp_path, **case)
    model = Llama.from_pretrained(tmp_path)
    assert model.config.tie_word_embeddings is case["tied"]
    assert (model.lm_head.weight is model.model.embed_tokens.weight) is case["tied"]
    vocab = case.get("vocab_size", 160)
    ids = torch.randint(0, vocab, (3, 90), generator=torch.Generator().manual_seed(1))  # past the original 64
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits)


def test_scaling_changes_the_logits(tmp_path):
    """The scaled test above would pass with the plain frequencies only if scaling did nothing here."""
    hf = make_tiny_hf_llama3(tmp_path)
    model = Llama.from_pretrained(tmp_path)
    plain = Llama(model.config.replace(rope_scaling=None)).eval()
    plain.load_state_dict(model.state_dict())
    ids = torch.randint(0, 160, (1, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert not torch.allclose(plain(ids), hf(ids).logits)


def test_save_pretrained_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = make_tiny_hf_llama3(tmp_path / "src")
    out = Llama.from_pretrained(tmp_path / "src").save_pretrained(tmp_path / "out")
    saved = json.loads((out / "config.json").read_text())
    assert saved["rope_scaling"]["rope_type"] == "llama3" and saved["eos_token_id"] == [2, 3]
    back = transformers.LlamaForCausalLM.from_pretrained(out).eval()
    assert back.config.tie_word_embeddings and back.config.rope_parameters["factor"] == 8.0
    ids = torch.randint(0, 160, (2, 70), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, hf(ids).logits)
        torch.testing.assert_close(Llama.from_pretrained(out)(ids), hf(ids).logits)


def _pair(**overrides):
    hf = make_tiny_hf_llama3(**overrides)
    model = Llama(LlamaConfig.from_hf_dict(hf.config.to_dict())).eval()
    model.load_state_dict(hf.state_dict(), strict=False)
    model.tie_weights()
    return hf, model


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_greedy_left_padded_batch_equals_transformers(cuda_graph):
    hf, model = _pair()
    greedy_left_padded_equals_transformers(hf, model, 4, (11, 3, 7), 4, 160, 30, cuda_graph)


def test_generation_stops_at_any_of_several_eos_ids_like_transformers():
    hf, model = _pair()
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(4, 160, (n,), generator=g).tolist() for n in (6, 9, 4)]
    ids, mask = left_pad(prompts, pad_id=0)
    free = model.generate(ids, max_new_tokens=16, attention_mask=mask, eos_id=None)
    eos = (int(free[0, 9 + 3]), int(free[1, 9 + 6]))  # what rows 0 and 1 emit at their 4th and 7th steps
    ref = hf.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=False, eos_token_id=list(eos),
                      pad_token_id=0)
    ours = model.generate(ids, max_new_tokens=16, attention_mask=mask, eos_id=eos, pad_id=0)
    assert torch.equal(ours, ref)
    reasons = finish_reasons(ours, 9, eos)
    assert reasons[:2] == ["stop", "stop"]
    assert reasons == ["stop" if set(row[9:].tolist()) & set(eos) else "length" for row in ours]
    assert finish_reasons(ours, 9, list(eos)) == reasons and finish_reasons(ours, 9, eos[0])[0] in ("stop", "length")
    with pytest.raises(MiniLlamaError, match="eos_id must be None, a token id or a non-empty list"):
        model.generate(ids, 2, eos_id=[])
    with pytest.raises(MiniLlamaError, match="eos_id must be None, a token id or a non-empty list"):
        model.generate(ids, 2, eos_id=(2, 999))


@pytest.mark.parametrize("change, words", [
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope scaling 'yarn' is not supported"),
    ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "rope scaling 'dynamic' is not supported"),
    ({"rope_scaling": {**SCALING, "factor": None}}, "rope_scaling.factor is missing"),
    ({"rope_scaling": {**SCALING, "low_freq_factor": 4.0}}, "rope_scaling.low_freq_factor=4.0 must be below"),
    ({"rope_scaling": {**SCALING, "factor": -1}}, "rope_scaling.factor must be a finite number > 0"),
    ({"rope_scaling": {**SCALING, "original_max_position_embeddings": 8.5}},
     "rope_scaling.original_max_position_embeddings must be an integer"),
    ({"rope_scaling": {**SCALING, "partial_rotary_factor": 0.5}}, "partial_rotary_factor=0.5 is not supported"),
    ({"eos_token_id": [2, 1000]}, "eos_token_ids must be a tuple of token ids"),
])
def test_unsupported_or_bad_llama3_configs_are_one_line(change, words):
    d = {**LlamaConfig(vocab_size=200, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                       num_attention_heads=2).to_hf_dict(), **change}
    with pytest.raises(MiniLlamaError) as exc:
        LlamaConfig.from_hf_dict(d, source="x/config.json")
    assert str(exc.value).startswith("x/config.json: ") and words in str(exc.value) and "\n" not in str(exc.value)
