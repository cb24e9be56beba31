"""Full-logit parity of minillama.Llama with transformers' LlamaForCausalLM, and checkpoint round trips."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import make_tiny_hf_llama
from minillama import Llama, LlamaConfig

CASES = {
    "mha-untied": dict(num_key_value_heads=4, tie_word_embeddings=False),
    "gqa-untied": dict(num_key_value_heads=2, tie_word_embeddings=False),
    "mha-tied": dict(num_key_value_heads=4, tie_word_embeddings=True),
    "gqa-tied": dict(num_key_value_heads=1, tie_word_embeddings=True),
}


@pytest.mark.parametrize("case", CASES)
def test_logits_equal_transformers(tmp_path, case):
    hf = make_tiny_hf_llama(tmp_path, **CASES[case])
    model = Llama.from_pretrained(tmp_path)
    ids = torch.randint(0, 128, (3, 21), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits)


def test_sharded_checkpoint_equal_transformers(tmp_path):
    hf = make_tiny_hf_llama(tmp_path, num_key_value_heads=2, max_shard_size="30KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 1
    model = Llama.from_pretrained(tmp_path)
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits)


@pytest.mark.parametrize("tied", [False, True])
def test_save_pretrained_sharded_loads_in_transformers(tmp_path, tied):
    transformers = pytest.importorskip("transformers")
    hf = make_tiny_hf_llama(tmp_path / "src", num_key_value_heads=2, tie_word_embeddings=tied)
    model = Llama.from_pretrained(tmp_path / "src")
    out = model.save_pretrained(tmp_path / "out", max_shard_size="40KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert ("lm_head.weight" in index["weight_map"]) is not tied
    back = transformers.LlamaForCausalLM.from_pretrained(out).eval()
    assert back.config.tie_word_embeddings is tied
    mine = Llama.from_pretrained(out)
    ids = torch.randint(0, 128, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf(ids).logits
        torch.testing.assert_close(back(ids).logits, ref)
        torch.testing.assert_close(mine(ids), ref)
    if tied:
        assert mine.lm_head.weight is mine.model.embed_tokens.weight


def test_single_file_save_replaces_old_shards(tmp_path):
    make_tiny_hf_llama(tmp_path / "src")
    model = Llama.from_pretrained(tmp_path / "src")
    model.save_pretrained(tmp_path / "out", max_shard_size="40KB")
    model.save_pretrained(tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["config.json", "generation_config.json", "model.safetensors"]
    assert set(Llama.from_pretrained(tmp_path / "out").state_dict()) == set(model.state_dict())


def test_parameter_names_equal_transformers():
    hf = make_tiny_hf_llama(num_key_value_heads=2)
    model = Llama(LlamaConfig.from_hf_dict(hf.config.to_dict()))
    assert {k: v.shape for k, v in model.named_parameters()} == {k: v.shape for k, v in hf.named_parameters()}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_load_matches_transformers(tmp_path, dtype):
    transformers = pytest.importorskip("transformers")
    make_tiny_hf_llama(tmp_path, num_key_value_heads=2)
    model = Llama.from_pretrained(tmp_path, dtype=dtype)
    assert all(p.dtype == dtype for p in model.parameters())
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=dtype).eval()
    ids = torch.randint(0, 128, (2, 13), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits)


def test_bf16_checkpoint_loads_as_float32(tmp_path):
    make_tiny_hf_llama(tmp_path / "src")
    Llama.from_pretrained(tmp_path / "src", dtype="bfloat16").save_pretrained(tmp_path / "bf16")
    cfg = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert cfg["torch_dtype"] == "bfloat16"
    model = Llama.from_pretrained(tmp_path / "bf16", dtype="float32")
    assert model.dtype == torch.float32 and model.config.torch_dtype == "float32"


def test_config_round_trip_and_transformers_reads_it():
    transformers = pytest.importorskip("transformers")
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8, rope_theta=5e5)
    d = cfg.to_hf_dict()
    assert LlamaConfig.from_hf_dict(d) == cfg
    hf = transformers.LlamaConfig(**d)
    assert (hf.num_key_value_heads, hf.head_dim, hf.num_hidden_layers) == (2, 8, 3)
    assert LlamaConfig.from_hf_dict(hf.to_dict()) == cfg


def test_kv_cache_decode_equals_full_forward():
    from minillama.kv_cache import make_cache

    hf = make_tiny_hf_llama(num_key_value_heads=2)
    model = Llama(LlamaConfig.from_hf_dict(hf.config.to_dict()))
    model.load_state_dict(hf.state_dict())
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(5))
    cache = make_cache(model.config, 2, 12, torch.float32, "cpu")
    with torch.no_grad():
        full = model(ids)
        parts = [model(ids[:, :5], cache=cache)]  # prefill 5, then a 3-token chunk, then one at a time
        parts.append(model(ids[:, 5:8], cache=cache, start_pos=5))
        parts += [model(ids[:, i:i + 1], cache=cache, start_pos=i) for i in range(8, 12)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full)


def test_inference_gqa_in_place_is_bit_identical_to_repeat_kv():
    """Without gradients, attention reads each key/value head in place (SDPA `enable_gqa`); with them,
    `repeat_kv` copies the heads. The logits are the same to the bit: causal, padded, and cached."""
    from minillama.kv_cache import make_cache

    hf = make_tiny_hf_llama(num_key_value_heads=2)
    model = Llama(LlamaConfig.from_hf_dict(hf.config.to_dict()))
    model.load_state_dict(hf.state_dict())
    ids = torch.randint(0, 128, (3, 10), generator=torch.Generator().manual_seed(6))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    mask[2, :1] = 0

    def logits():
        cache = make_cache(model.config, 3, 12, torch.float32, "cpu")
        full = torch.ones(3, 12, dtype=torch.long)
        full[:, :10] = mask
        out = [model(ids), model(ids, attention_mask=mask), model(ids, attention_mask=mask, cache=cache)]
        step = model(ids[:, -1:], attention_mask=full[:, :11], position_ids=mask.sum(-1, keepdim=True),
                     cache=cache, start_pos=10)
        return [o.detach() for o in out + [step]]

    with torch.no_grad():
        in_place = logits()
    copied = logits()  # gradients enabled: the repeat_kv path
    for a, b in zip(in_place, copied):
        assert torch.equal(a, b)


def test_rope_table_stays_float32_after_casting_the_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    make_tiny_hf_llama(tmp_path)
    model = Llama.from_pretrained(tmp_path).to(torch.bfloat16)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    ids = torch.randint(0, 128, (1, 200), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits)
    assert model.model.rotary_emb.cos_cached.dtype == torch.float32


def test_rope_table_grows_past_max_position_embeddings(tmp_path):
    hf = make_tiny_hf_llama(tmp_path)
    model = Llama.from_pretrained(tmp_path)
    ids = torch.randint(0, 128, (1, 300), generator=torch.Generator().manual_seed(7))  # > 256 positions
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits)


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path):
    make_tiny_hf_llama(tmp_path, num_key_value_heads=2)
    ids = torch.randint(0, 128, (2, 10), generator=torch.Generator().manual_seed(8))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # right padding, as in training batches
    grads = []
    for checkpointing in (False, True):
        model = Llama.from_pretrained(tmp_path).train()
        model.gradient_checkpointing_enable(checkpointing)
        logits = model(ids, attention_mask=mask)
        torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
        grads.append({k: p.grad for k, p in model.named_parameters()})
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k])


def test_right_padded_training_batch_equals_transformers(tmp_path):
    """With right padding (training batches) positions are 0..n-1 in both: the real tokens' logits agree."""
    hf = make_tiny_hf_llama(tmp_path, num_key_value_heads=2)
    model = Llama.from_pretrained(tmp_path)
    ids = torch.randint(3, 128, (3, 10), generator=torch.Generator().manual_seed(9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    with torch.no_grad():
        ours, ref = model(ids, attention_mask=mask), hf(ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], ref[real])
