"""Rotary position embeddings (RoPE, Su et al. 2021) in the "rotate-half" layout of Hugging Face's Llama.

Meta's reference code rotates interleaved pairs (x0, x1), (x2, x3) ...; Hugging Face's conversion script
permutes the rows of q_proj/k_proj so that the same rotation is the pairs (x_i, x_{i+d/2}) instead.
We load Hugging Face checkpoints, so we use the rotate-half form.
"""
from __future__ import annotations

import torch
from torch import nn


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """`[x1, x2] -> [-x2, x1]` on the last dimension (the 90-degree rotation of each (x_i, x_{i+d/2}) pair)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys by their positions' angles.

    Shapes:
        q: [B, n_heads, T, head_dim], k: [B, n_kv_heads, T, head_dim]
        cos, sin: [B, 1, T, head_dim] (broadcast over heads)
    """
    q_rot = q * cos + rotate_half(q) * sin  # Eq. 34, Su et al. 2021
    k_rot = k * cos + rotate_half(k) * sin
    return q_rot, k_rot


class RotaryEmbedding(nn.Module):
    """A float32 table of cos/sin for every position, built once and gathered per forward (float64 for a
    float64 model, whose every step is float64).

    The table is a non-persistent buffer (it is not in the state dict, like HF's `inv_freq`), so it is
    rebuilt by `reset_cache()` after a model is materialised from the meta device.

    Args:
        head_dim: Rotated width (the whole head in Llama-2).
        max_positions: Initial table length; it grows on demand for longer sequences.
        theta: Frequency base (`rope_theta`, 10000 for Llama-2).
    """

    def __init__(self, head_dim: int, max_positions: int, theta: float = 10000.0):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("cos_cached", torch.empty(0), persistent=False)
        self.register_buffer("sin_cached", torch.empty(0), persistent=False)
        self.reset_cache(max_positions)

    @torch.no_grad()
    def reset_cache(self, max_positions: int | None = None, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> None:
        """(Re)build the cos/sin table with `max_positions` rows on `device` (default: where it is now), in `dtype`."""
        max_positions = max_positions or self.cos_cached.shape[0]
        device = torch.device(device) if device is not None else self.cos_cached.device
        if device.type == "meta":
            self.cos_cached = torch.empty(max_positions, self.head_dim, device=device)
            self.sin_cached = torch.empty(max_positions, self.head_dim, device=device)
            return
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).to(dtype) / self.head_dim
        inv_freq = 1.0 / (self.theta ** exponent)  # theta_i = 10000^(-2i/d), Su et al. 2021 Eq. 15
        t = torch.arange(max_positions, dtype=torch.int64, device=device).to(dtype)
        freqs = torch.outer(t, inv_freq)  # [P, head_dim/2]
        emb = torch.cat((freqs, freqs), dim=-1)  # [P, head_dim] (rotate-half layout)
        self.cos_cached, self.sin_cached = emb.cos(), emb.sin()

    def forward(self, position_ids: torch.Tensor | None, dtype: torch.dtype, max_position: int | None = None,
                start: int = 0, length: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Look up the angles of `position_ids`, or of the contiguous positions `start ... start+length-1`
        when `position_ids` is None (a slice of the table: no gather).

        Args:
            position_ids: Integer positions, or None.
            dtype: Output dtype (the activations' dtype).
            max_position: An upper bound on the largest position (known to the caller without a device
                sync); the table grows if it is too short.
            start, length: The contiguous range used when `position_ids` is None.

        Shapes:
            position_ids: [B, T] -> cos, sin: [B, 1, T, head_dim] (or [1, 1, length, head_dim])
        """
        table = torch.float64 if dtype == torch.float64 else torch.float32
        if self.cos_cached.dtype != table:  # `model.to(bfloat16)` also casts buffers: rebuild
            self.reset_cache(dtype=table)
        if max_position is not None and max_position >= self.cos_cached.shape[0]:
            self.reset_cache(max(2 * self.cos_cached.shape[0], max_position + 1), dtype=table)
        if position_ids is None:
            cos = self.cos_cached[start:start + length].to(dtype)[None, None]  # [1, 1, T, head_dim]
            sin = self.sin_cached[start:start + length].to(dtype)[None, None]  # [1, 1, T, head_dim]
            return cos, sin
        cos = self.cos_cached[position_ids].to(dtype).unsqueeze(1)  # [B, 1, T, head_dim]
        sin = self.sin_cached[position_ids].to(dtype).unsqueeze(1)  # [B, 1, T, head_dim]
        return cos, sin
