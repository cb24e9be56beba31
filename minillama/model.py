"""The Llama-2 decoder (Touvron et al. 2023) in one file, read top to bottom: RMSNorm, rotary embeddings,
masks, the KV cache, attention, the SwiGLU MLP, the decoder block and `Llama`, with Hugging Face's names.

With its config's differences it is also the Llama-3.x (RoPE scaling, tied embeddings) and the Mistral 7B
(sliding window) decoder, whose weights have the same names and shapes; those differences live in side
modules named for them (`rope_scaling.py`, `sliding_window.py`). The CUDA-graph decoding step is in
`static_decode.py`, loading in `load.py`, the decoding loop in `generate.py`.

Shape legend: B batch, T new tokens, S = start_pos + T positions attended to, d = hidden_size,
H query heads, Hkv key/value heads, hd = head_dim, V vocabulary.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import LlamaConfig
from .rope_scaling import scaled_inv_freq
from .sliding_window import window_mask


# ----------------------------------------------------------------------------------------------- RMSNorm
class RMSNorm(nn.Module):
    """`y = w * x / sqrt(mean(x^2) + eps)`, computed in float32 (float64 for float64 inputs) and cast back,
    as Hugging Face does.

    Args:
        dim: Size of the last dimension.
        eps: Added to the mean square for numerical stability (`rms_norm_eps`).
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: x: [..., dim] -> [..., dim] (same dtype as x)."""
        input_dtype = x.dtype
        h = x.to(torch.promote_types(input_dtype, torch.float32))
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)  # Eq. 4, Zhang & Sennrich 2019
        return self.weight * h.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.variance_epsilon}"


# ---------------------------------------------------------------------------------- Rotary embeddings (RoPE)
# Hugging Face's "rotate-half" layout: Meta's code rotates interleaved pairs (x0, x1), (x2, x3) ...; HF's
# conversion script permutes the rows of q_proj/k_proj so that the same rotation is the pairs (x_i, x_{i+d/2}).
def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """`[x1, x2] -> [-x2, x1]` on the last dimension (the 90-degree rotation of each (x_i, x_{i+d/2}) pair)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys by their positions' angles.

    Shapes:
        q: [B, H, T, hd], k: [B, Hkv, T, hd]; cos, sin: [B, 1, T, hd] (broadcast over heads)
    """
    q_rot = q * cos + rotate_half(q) * sin  # Eq. 34, Su et al. 2021
    k_rot = k * cos + rotate_half(k) * sin
    return q_rot, k_rot


FIRST_ROWS = 8192  # the table starts with this many positions (or the context, if shorter) and doubles on demand:
# Llama-3's 131072-position context would cost 134 MB of cos/sin at head_dim 128 before a long sequence ever comes


def table_rows(max_position_embeddings: int) -> int:
    """Rows of the cos/sin table a model starts with."""
    return min(max_position_embeddings, FIRST_ROWS)


class RotaryEmbedding(nn.Module):
    """A float32 table of cos/sin for every position, built once and gathered per forward (float64 for a
    float64 model). The table is a non-persistent buffer (not in the state dict, like HF's `inv_freq`), so
    `reset_cache()` rebuilds it after a model is materialised from the meta device.

    Args:
        head_dim: Rotated width (the whole head).
        max_positions: Initial table length; it grows on demand for longer sequences.
        theta: Frequency base (`rope_theta`: 10000 for Llama-2, 500000 for Llama-3, 1e6 for Mistral v0.2+).
        scaling: Llama-3.1's `config.RopeScaling` (see `rope_scaling.py`), or None for the plain frequencies.
    """

    def __init__(self, head_dim: int, max_positions: int, theta: float = 10000.0, scaling=None):
        super().__init__()
        self.head_dim, self.theta, self.scaling = head_dim, theta, scaling
        self.register_buffer("cos_cached", torch.empty(0), persistent=False)
        self.register_buffer("sin_cached", torch.empty(0), persistent=False)
        self.reset_cache(max_positions)

    @torch.no_grad()
    def reset_cache(self, max_positions: int | None = None, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> None:
        """(Re)build the table with `max_positions` rows (default: as now) on `device` (default: as now)."""
        max_positions = max_positions or self.cos_cached.shape[0]
        device = torch.device(device) if device is not None else self.cos_cached.device
        if device.type == "meta":
            self.cos_cached = torch.empty(max_positions, self.head_dim, device=device)
            self.sin_cached = torch.empty(max_positions, self.head_dim, device=device)
            return
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).to(dtype) / self.head_dim
        inv_freq = 1.0 / (self.theta ** exponent)  # theta_i = 10000^(-2i/d), Eq. 15, Su et al. 2021
        if self.scaling is not None:
            inv_freq = scaled_inv_freq(inv_freq, self.scaling)  # [hd/2]
        t = torch.arange(max_positions, dtype=torch.int64, device=device).to(dtype)
        freqs = torch.outer(t, inv_freq)  # [P, hd/2]
        emb = torch.cat((freqs, freqs), dim=-1)  # [P, hd] (rotate-half layout)
        self.cos_cached, self.sin_cached = emb.cos(), emb.sin()

    def forward(self, position_ids: torch.Tensor | None, dtype: torch.dtype, max_position: int | None = None,
                start: int = 0, length: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The angles of `position_ids`, or of `start ... start+length-1` when it is None (a slice: no gather).

        Args:
            position_ids: Integer positions, or None.
            dtype: Output dtype (the activations').
            max_position: An upper bound on the largest position (no device sync); the table grows to hold it.
            start, length: The contiguous range used when `position_ids` is None.

        Shapes:
            position_ids: [B, T] -> cos, sin: [B, 1, T, hd] (or [1, 1, length, hd])
        """
        table = torch.float64 if dtype == torch.float64 else torch.float32
        if self.cos_cached.dtype != table:  # `model.to(bfloat16)` also casts buffers: rebuild
            self.reset_cache(dtype=table)
        if max_position is not None and max_position >= self.cos_cached.shape[0]:
            self.reset_cache(max(2 * self.cos_cached.shape[0], max_position + 1), dtype=table)
        if position_ids is None:
            cos = self.cos_cached[start:start + length].to(dtype)[None, None]  # [1, 1, T, hd]
            sin = self.sin_cached[start:start + length].to(dtype)[None, None]  # [1, 1, T, hd]
            return cos, sin
        cos = self.cos_cached[position_ids].to(dtype).unsqueeze(1)  # [B, 1, T, hd]
        sin = self.sin_cached[position_ids].to(dtype).unsqueeze(1)  # [B, 1, T, hd]
        return cos, sin


# ---------------------------------------------------------------------------- Masks and positions
def positions_from_mask(attention_mask: torch.Tensor | None, start_pos: int, t: int,
                        device: torch.device) -> torch.Tensor:
    """Position ids of the T new tokens: `start_pos + arange(T)`, or, with a padding mask, the count of real
    tokens before each one (so a left-padded row gets the same positions as the prompt alone).

    Shapes:
        attention_mask: [B, S] (1 = real token, 0 = padding) -> [B, T] (or [1, T] without a mask)
    """
    if attention_mask is None:
        return torch.arange(start_pos, start_pos + t, device=device).unsqueeze(0)  # [1, T]
    pos = attention_mask.long().cumsum(-1) - 1  # [B, S]
    return pos.clamp_(min=0)[:, -t:]  # [B, T]


def build_attention_mask(attention_mask: torch.Tensor | None, start_pos: int, t: int,
                         device: torch.device, sliding_window: int | None = None) -> torch.Tensor | None:
    """Boolean causal mask (True = may attend), or None when SDPA's own causal path is exact: no padding and
    the new tokens start at 0 (plain causal) or are one token (it sees every cached position). Each query may
    always attend to itself, so a padding query never has an empty softmax row (NaN in later layers).

    Args:
        attention_mask: 1 = real token, 0 = padding, over all S positions; None = no padding.
        start_pos: Cache slot of the first new token.
        t: Number of new tokens.
        device: Where the mask is built.
        sliding_window: Mistral's window W (`sliding_window.window_mask`), or None.

    Shapes:
        attention_mask: [B, S] -> [B, 1, T, S] or [1, 1, T, S] or None
    """
    mask = None
    if attention_mask is not None or (start_pos > 0 and t > 1):
        s = start_pos + t
        q_pos = torch.arange(start_pos, s, device=device)[:, None]  # [T, 1]
        k_pos = torch.arange(s, device=device)[None, :]  # [1, S]
        mask = (k_pos <= q_pos)[None, None]  # [1, 1, T, S]
        if attention_mask is not None:
            keep = attention_mask[:, None, None, :s].bool() | (k_pos == q_pos)[None, None]  # [B, 1, T, S]
            mask = mask & keep
    return mask if sliding_window is None else window_mask(mask, start_pos, t, device, sliding_window)


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Causal mask of packed rows (several examples share a row): a token sees earlier tokens of its own segment.
    Shapes: segment_ids: [B, T] (equal ids = one example; padding may be a segment) -> [B, 1, T, T]"""
    t = segment_ids.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=segment_ids.device).tril()  # [T, T]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # [B, T, T]
    return (same & causal)[:, None]  # [B, 1, T, T]


# -------------------------------------------------------------------------------------------- KV cache
class KVCache:
    """Keys and values of one attention layer for `max_len` positions (prompt + new tokens), allocated once:
    each decoding step writes one slot instead of concatenating tensors.

    Args:
        batch_size, n_kv_heads, max_len, head_dim: The cache's shape [B, Hkv, max_len, hd].
        dtype, device: The activations'.
    """

    def __init__(self, batch_size: int, n_kv_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def update(self, k: torch.Tensor, v: torch.Tensor, start: int | torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write `k`, `v` at positions `start ... start+T-1` and return all keys/values up to there.

        With `start` a tensor (the static-shape step that CUDA graphs replay, `static_decode.py`) the write
        is an `index_copy_` and the whole cache is returned; the caller's mask hides unused slots.

        Shapes:
            k, v: [B, Hkv, T, hd] -> keys, values: [B, Hkv, start+T, hd] (views, no copy),
            or [B, Hkv, max_len, hd] when `start` is a tensor of shape [T]
        """
        if isinstance(start, torch.Tensor):
            self.k.index_copy_(2, start, k)
            self.v.index_copy_(2, start, v)
            return self.k, self.v
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows (rows that finished generating leave the batch).
        Shapes: rows: [B'] indices -> k, v: [B', Hkv, max_len, hd]"""
        self.k, self.v = self.k[rows], self.v[rows]


def make_cache(config: LlamaConfig, batch_size: int, max_len: int, dtype: torch.dtype,
               device: torch.device | str) -> list[KVCache]:
    """One `KVCache` per layer of a model with `config`."""
    return [KVCache(batch_size, config.num_key_value_heads, max_len, config.head_dim, dtype, device)
            for _ in range(config.num_hidden_layers)]


# ------------------------------------------------------------------------------------------- Attention
def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each key/value head `n_rep` times so every query head has its own (GQA, Ainslie et al. 2023).
    Shapes: x: [B, Hkv, S, hd] -> [B, Hkv * n_rep, S, hd]"""
    if n_rep == 1:
        return x
    b, n_kv, s, hd = x.shape
    return x[:, :, None].expand(b, n_kv, n_rep, s, hd).reshape(b, n_kv * n_rep, s, hd)  # [B, H, S, hd]


class LlamaAttention(nn.Module):
    """Multi-head attention of Llama-2: q/k/v/o projections without bias, RoPE on q and k, and
    `softmax(q k^T / sqrt(hd) + mask) v` through `F.scaled_dot_product_attention`.

    Args:
        hidden_size: Model width d.
        num_heads: Query heads H.
        num_kv_heads: Key/value heads Hkv (H for MHA, fewer for GQA).
        head_dim: Width of one head.
    """

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.n_rep = num_heads // num_kv_heads
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None = None, cache: KVCache | None = None, start_pos: int = 0
                ) -> torch.Tensor:
        """Attend from the T new positions to themselves and to everything in the cache.

        Args:
            x: Normalised hidden states of the new positions.
            cos, sin: Rotary angles of the new positions.
            mask: Boolean, True = may attend; None means plain causal (or, for one query, attend to all).
            cache: Keys/values of earlier positions; updated in place.
            start_pos: Position in the cache of the first new token.

        Shapes:
            x: [B, T, d]; cos, sin: [B, 1, T, hd]; mask: [B, 1, T, S] -> [B, T, d]
        """
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, T, hd]
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, hd]
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, hd]
        q, k = apply_rotary(q, k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, start_pos)  # [B, Hkv, S, hd]
        # GQA without copies: SDPA's `enable_gqa` reads each key/value head in place for its `n_rep` query heads,
        # bit-for-bit the output of `repeat_kv`. Only where no gradient flows (its backward sums the heads'
        # gradients in another order) and not for a masked CUDA call (no fused kernel takes both, as in HF).
        gqa = self.n_rep > 1 and not torch.is_grad_enabled() and (mask is None or q.device.type == "cpu")
        if not gqa:
            k, v = repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep)  # [B, H, S, hd]
        causal = mask is None and t > 1
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                             enable_gqa=gqa)  # Eq. 1, Vaswani et al. 2017
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)  # [B, T, H*hd]
        return self.o_proj(out)


# ------------------------------------------------------------------------------------------- SwiGLU MLP
class LlamaMLP(nn.Module):
    """`down_proj(silu(gate_proj(x)) * up_proj(x))`, no biases, Swish with beta = 1 (i.e. SiLU).

    This is the released Llama-2 MLP; the paper's Eq. 1 writes a different formula (docs/paper-vs-code.md).

    Args:
        hidden_size: Model width d.
        intermediate_size: Hidden width of the MLP (11008 for Llama-2-7B).
    """

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: x: [B, T, d] -> [B, T, d]."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # FFN_SwiGLU, Sec. 2, Shazeer 2020


# ------------------------------------------------------------------------------------------ Decoder block
class LlamaDecoderLayer(nn.Module):
    """One pre-norm block, `h = x + Attn(RMSNorm(x))`, `out = h + MLP(RMSNorm(h))`, with HF's module names.

    Args:
        config: Model hyper-parameters.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.self_attn = LlamaAttention(config.hidden_size, config.num_attention_heads,
                                        config.num_key_value_heads, config.head_dim)
        self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None = None, cache: KVCache | None = None, start_pos: int = 0
                ) -> torch.Tensor:
        """Shapes: x: [B, T, d] -> [B, T, d] (see `LlamaAttention.forward` for the others)."""
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, start_pos)
        return h + self.mlp(self.post_attention_layernorm(h))


# ------------------------------------------------------------------------------------------------ Llama
class LlamaModel(nn.Module):
    """Embedding, decoder blocks and final norm (HF's `LlamaModel`, reachable as `Llama.model`).

    Args:
        config: Model hyper-parameters.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.head_dim, table_rows(config.max_position_embeddings),
                                          config.rope_theta, scaling=config.rope_scaling)
        self.sliding_window = config.sliding_window
        self.gradient_checkpointing = False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: list[KVCache] | None = None,
                start_pos: int = 0, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states of the new tokens (see `Llama.forward` for the arguments).

        `segment_ids` (training on packed rows, no cache): tokens attend only to earlier tokens with the same
        id (`block_causal_mask`); give each example's `position_ids` too, restarting at 0.

        Shapes:
            input_ids: [B, T]; attention_mask: [B, S]; position_ids: [B, T]; segment_ids: [B, T] -> [B, T, d]
        """
        b, t = input_ids.shape
        if attention_mask is not None and t > 1 and bool(attention_mask.all()):
            attention_mask = None  # no padding: let SDPA take its (faster) causal path
        x = self.embed_tokens(input_ids)  # [B, T, d]
        if position_ids is None and attention_mask is not None:
            position_ids = positions_from_mask(attention_mask, start_pos, t, input_ids.device)  # [B, T]
        if attention_mask is not None:  # positions count real tokens: below the mask's length
            max_position = attention_mask.shape[1] - 1
        elif position_ids is not None:  # given by the caller (costs one device sync)
            max_position = int(position_ids.max())
        else:  # no padding: positions start_pos ... start_pos+T-1, a slice of the table
            max_position = start_pos + t - 1
        cos, sin = self.rotary_emb(position_ids, x.dtype, max_position=max_position, start=start_pos,
                                   length=t)  # [B or 1, 1, T, hd]
        mask = build_attention_mask(attention_mask, start_pos, t, input_ids.device,
                                    sliding_window=self.sliding_window)  # [B or 1, 1, T, S] or None
        if segment_ids is not None:
            block = block_causal_mask(segment_ids)  # [B, 1, T, T]
            mask = block if mask is None else mask & block
        for i, layer in enumerate(self.layers):
            layer_cache = cache[i] if cache is not None else None
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, cos, sin, mask, layer_cache, start_pos, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, layer_cache, start_pos)
        return self.norm(x)


class Llama(nn.Module):
    """The Llama-2 / Llama-3 / Mistral causal language model (HF's `LlamaForCausalLM` and
    `MistralForCausalLM` maths and parameter names).

    Parameters: `model.embed_tokens.weight`, `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight`,
    `model.layers.{i}.mlp.{gate,up,down}_proj.weight`, `model.layers.{i}.input_layernorm.weight`,
    `model.layers.{i}.post_attention_layernorm.weight`, `model.norm.weight`, `lm_head.weight`
    (the same tensor as the embedding when `config.tie_word_embeddings`).

    Args:
        config: Model hyper-parameters.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the embedding with `lm_head` when the config says so (again after a state-dict assign)."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: list[KVCache] | None = None,
                start_pos: int = 0, logits_to_keep: int = 0) -> torch.Tensor:
        """Next-token logits.

        Args:
            input_ids: Token ids of the new positions.
            attention_mask: 1 for real tokens, 0 for padding, covering the cached positions too
                (left padding for generation, any padding for training). None = no padding.
            position_ids: Explicit positions (below the mask's length when a mask is given). By default
                `start_pos + arange(T)`, or with a mask the number of real tokens before each token, so
                left padding does not shift a row (transformers' forward uses arange unless given them;
                its `generate` derives them from the mask as we do).
            cache: Per-layer `KVCache` (see `make_cache`), updated in place.
            start_pos: Cache slot of the first new token.
            logits_to_keep: If > 0, only the logits of the last `logits_to_keep` positions are computed.

        Shapes:
            input_ids: [B, T]; attention_mask: [B, S] -> [B, T, V] (or [B, logits_to_keep, V]), weights' dtype
        """
        h = self.model(input_ids, attention_mask, position_ids, cache, start_pos)  # [B, T, d]
        if logits_to_keep > 0:
            h = h[:, -logits_to_keep:]  # [B, K, d]
        return self.lm_head(h)

    def make_cache(self, batch_size: int, max_len: int) -> list[KVCache]:
        """Empty per-layer caches for `batch_size` rows of up to `max_len` positions, in the model's dtype."""
        return make_cache(self.config, batch_size, max_len, self.dtype, self.device)

    def gradient_checkpointing_enable(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward (saves memory when fine-tuning)."""
        self.model.gradient_checkpointing = enable

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, dtype: torch.dtype | str | None = None,
                        device: torch.device | str | None = None, quantize: str | None = None,
                        double_quant: bool = True) -> "Llama":
        """Load a Hugging Face Llama checkpoint (local folder, `.gguf` file or Hub id), optionally straight
        into NF4 (`quantize="nf4"`, QLoRA); see `load.load_pretrained`."""
        from .load import load_pretrained
        return load_pretrained(cls, path_or_id, dtype=dtype, device=device, quantize=quantize,
                               double_quant=double_quant)

    def save_pretrained(self, out_dir: str | Path, max_shard_size: int | str = "2GB") -> Path:
        """Write config.json + safetensors in Hugging Face's layout; see `save.save_pretrained`."""
        from .save import save_pretrained
        return save_pretrained(self, out_dir, max_shard_size=max_shard_size)

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, top_k: int = 0, eos_id: int | Sequence[int] | None = 2,
                 attention_mask: torch.Tensor | None = None, seed: int | None = None, pad_id: int = 0,
                 on_token: Callable[[torch.Tensor], None] | None = None, cuda_graph: bool = False
                 ) -> torch.Tensor:
        """Prompt + new tokens; see `generate.generate` for the arguments."""
        from .generate import generate
        return generate(self, input_ids, max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                        eos_id=eos_id, attention_mask=attention_mask, seed=seed, pad_id=pad_id,
                        on_token=on_token, cuda_graph=cuda_graph)
