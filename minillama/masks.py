"""Padding masks and position ids for ragged (left-padded) batches and the KV cache.

Kept apart from `model.py` so that `generate.py` can use them without importing the model module
(which imports `generate` lazily for `Llama.generate`): no import cycle.
"""
from __future__ import annotations

import torch


def positions_from_mask(attention_mask: torch.Tensor | None, start_pos: int, t: int,
                        device: torch.device) -> torch.Tensor:
    """Position ids of the T new tokens: `start_pos + arange(T)`, or, with a padding mask, the count of real
    tokens before each one (so a left-padded row gets the same positions as the prompt alone).

    Shapes:
        attention_mask: [B, S] (1 = real token, 0 = padding), S = start_pos + T -> [B, T]
    """
    if attention_mask is None:
        return torch.arange(start_pos, start_pos + t, device=device).unsqueeze(0)  # [1, T]
    pos = attention_mask.long().cumsum(-1) - 1  # [B, S]
    return pos.clamp_(min=0)[:, -t:]  # [B, T]


def build_attention_mask(attention_mask: torch.Tensor | None, start_pos: int, t: int,
                         device: torch.device) -> torch.Tensor | None:
    """Boolean `[B, 1, T, S]` mask (True = may attend), or None when SDPA's own causal path is exact.

    None is returned without padding when the new tokens start at 0 (plain causal) or are a single token
    (it may attend to every cached position). Each query may always attend to itself, so a padding query
    never has an empty softmax row (which would put NaN into later layers' keys and values).
    """
    if attention_mask is None and (start_pos == 0 or t == 1):
        return None
    s = start_pos + t
    q_pos = torch.arange(start_pos, s, device=device)[:, None]  # [T, 1]
    k_pos = torch.arange(s, device=device)[None, :]  # [1, S]
    mask = (k_pos <= q_pos)[None, None]  # [1, 1, T, S]
    if attention_mask is not None:
        keep = attention_mask[:, None, None, :s].bool() | (k_pos == q_pos)[None, None]  # [B, 1, T, S]
        mask = mask & keep
    return mask
