"""Causal self-attention with grouped-query heads (GQA) and an optional KV cache."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .kv_cache import KVCache
from .rope import apply_rotary


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Repeat each key/value head `n_rep` times so every query head has its own (GQA, Ainslie et al. 2023).

    Shapes:
        x: [B, n_kv, S, hd] -> [B, n_kv * n_rep, S, hd]
    """
    if n_rep == 1:
        return x
    b, n_kv, s, hd = x.shape
    return x[:, :, None].expand(b, n_kv, n_rep, s, hd).reshape(b, n_kv * n_rep, s, hd)  # [B, H, S, hd]


class LlamaAttention(nn.Module):
    """Multi-head attention of Llama-2: q/k/v/o projections without bias, RoPE on q and k, and
    `softmax(q k^T / sqrt(head_dim) + mask) v` (Vaswani et al. 2017, Eq. 1) through
    `F.scaled_dot_product_attention`.

    Args:
        hidden_size: Model width d.
        num_heads: Query heads H.
        num_kv_heads: Key/value heads (H for MHA, fewer for GQA).
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
            x: [B, T, d]; cos, sin: [B, 1, T, hd]; mask: [B, 1, T, S] with S = start_pos + T
            returns: [B, T, d]
        """
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, T, hd]
        k = self.k_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, hd]
        v = self.v_proj(x).view(b, t, self.num_kv_heads, self.head_dim).transpose(1, 2)  # [B, Hkv, T, hd]
        q, k = apply_rotary(q, k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, start_pos)  # [B, Hkv, S, hd]
        k, v = repeat_kv(k, self.n_rep), repeat_kv(v, self.n_rep)  # [B, H, S, hd]
        causal = mask is None and t > 1
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # [B, H, T, hd]
        out = out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)  # [B, T, H*hd]
        return self.o_proj(out)
