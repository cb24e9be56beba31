"""Rotary position embeddings (RoPE, Su et al. 2021) in the "rotate-half" layout of Hugging Face's Llama.

Meta's reference code rotates interleaved pairs (x0, x1), (x2, x3) ...; Hugging Face's conversion script
permutes the rows of q_proj/k_proj so that the same rotation is the pairs (x_i, x_{i+d/2}) instead.
We load Hugging Face checkpoints, so we use the rotate-half form.

Llama-3.1 and 3.2 stretch the low frequencies for a longer context (`rope_scaling` "llama3",
`llama3_inv_freq`); Llama-2, Llama-3.0 and Mistral use the plain frequencies.
"""
from __future__ import annotations

import math

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


def llama3_inv_freq(inv_freq: torch.Tensor, factor: float, low_freq_factor: float, high_freq_factor: float,
                    original_max_position_embeddings: int) -> torch.Tensor:
    """Llama-3.1's frequency-dependent scaling of the rotary frequencies (`rope_type: "llama3"`).

    Meta's `apply_scaling` (the Llama 3.1 reference model, meta-llama/llama-models), in the operation order of
    transformers' `_compute_llama3_parameters` so that the table is bit-identical: with L the original context,
    wavelengths `2 pi / f` below `L / high_freq_factor` keep their frequency (local detail), those above
    `L / low_freq_factor` are divided by `factor` (positional interpolation for the long context), and those
    between blend the two with `s = (L / wavelength - low) / (high - low)`.

    Shapes:
        inv_freq: [head_dim / 2] -> [head_dim / 2]
    """
    low_freq_wavelen = original_max_position_embeddings / low_freq_factor
    high_freq_wavelen = original_max_position_embeddings / high_freq_factor
    wavelen = 2 * math.pi / inv_freq  # [hd/2]
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)  # low frequencies / factor
    smooth = (original_max_position_embeddings / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled  # Llama 3.1 reference code (Meta 2024), apply_scaling
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


FIRST_ROWS = 8192  # the table starts with this many positions (or the context, if shorter) and doubles on demand:
# Llama-3's 131072-position context would cost 134 MB of cos/sin at head_dim 128 before a long sequence ever comes


def table_rows(max_position_embeddings: int) -> int:
    """Rows of the cos/sin table a model starts with."""
    return min(max_position_embeddings, FIRST_ROWS)


class RotaryEmbedding(nn.Module):
    """A float32 table of cos/sin for every position, built once and gathered per forward (float64 for a
    float64 model, whose every step is float64).

    The table is a non-persistent buffer (it is not in the state dict, like HF's `inv_freq`), so it is
    rebuilt by `reset_cache()` after a model is materialised from the meta device.

    Args:
        head_dim: Rotated width (the whole head in Llama-2).
        max_positions: Initial table length; it grows on demand for longer sequences.
        theta: Frequency base (`rope_theta`: 10000 for Llama-2, 500000 for Llama-3, 1e6 for Mistral v0.2+).
        scaling: Llama-3.1's `config.RopeScaling`, or None for the plain frequencies.
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
        """(Re)build the cos/sin table with `max_positions` rows on `device` (default: where it is now), in `dtype`."""
        max_positions = max_positions or self.cos_cached.shape[0]
        device = torch.device(device) if device is not None else self.cos_cached.device
        if device.type == "meta":
            self.cos_cached = torch.empty(max_positions, self.head_dim, device=device)
            self.sin_cached = torch.empty(max_positions, self.head_dim, device=device)
            return
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).to(dtype) / self.head_dim
        inv_freq = 1.0 / (self.theta ** exponent)  # theta_i = 10000^(-2i/d), Su et al. 2021 Eq. 15
        if self.scaling is not None:
            s = self.scaling
            inv_freq = llama3_inv_freq(inv_freq, s.factor, s.low_freq_factor, s.high_freq_factor,
                                       s.original_max_position_embeddings)  # [head_dim/2]
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
