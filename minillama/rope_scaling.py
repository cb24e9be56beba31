"""Llama-3.1's frequency-dependent RoPE scaling (`rope_scaling: {"rope_type": "llama3", ...}` in config.json).

Llama-3.1 and 3.2 stretch the low rotary frequencies for a 131072-position context; Llama-2, Llama-3.0 and
Mistral use the plain frequencies of `model.RotaryEmbedding`, which calls `scaled_inv_freq` when the config
has a `RopeScaling`.
"""
from __future__ import annotations

import math

import torch


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


def scaled_inv_freq(inv_freq: torch.Tensor, scaling) -> torch.Tensor:
    """`inv_freq` under a `config.RopeScaling` (Llama-3.1, 3.2). Shapes: [head_dim / 2] -> [head_dim / 2]."""
    return llama3_inv_freq(inv_freq, scaling.factor, scaling.low_freq_factor, scaling.high_freq_factor,
                           scaling.original_max_position_embeddings)
