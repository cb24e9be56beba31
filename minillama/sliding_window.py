"""Mistral 7B's sliding-window attention (Jiang et al. 2023, Sec. 2): a query at cache slot q sees only the keys
at slots q - W < k <= q (transformers' `sliding_window_overlay`; slots, not positions, so left padding counts,
as there). Llama-2 and Llama-3 attend to the whole prefix; `config.sliding_window` is None for them."""
from __future__ import annotations

import torch


def window_mask(mask: torch.Tensor | None, start_pos: int, t: int, device: torch.device, window: int
                ) -> torch.Tensor | None:
    """`mask` (None = plain causal) with the keys that fell out of the window hidden as well.

    Shapes:
        mask: [B or 1, 1, T, S] with S = start_pos + T -> the same, or [1, 1, T, S] when `mask` is None
    """
    s = start_pos + t
    if s <= window:  # every key is inside the window
        return mask
    q_pos = torch.arange(start_pos, s, device=device)[:, None]  # [T, 1]
    k_pos = torch.arange(s, device=device)[None, :]  # [1, S]
    inside = ((k_pos <= q_pos) & (k_pos > q_pos - window))[None, None]  # [1, 1, T, S], Jiang et al. 2023 Sec. 2
    return inside if mask is None else mask & inside


def slide(mask: torch.Tensor, slot: int, window: int) -> None:
    """Hide, in the static decoder's key mask, the slots that leave the window when slot `slot` is written.

    Shapes:
        mask: [B, 1, 1, max_len] bool, changed in place
    """
    if slot >= window:  # keys at slots <= slot - W left the window
        mask[:, :, :, :slot - window + 1] = False
