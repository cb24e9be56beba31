"""What the decoder is fed: token ids checked, padding masks and position ids for ragged (left-padded)
batches and the KV cache.

Kept apart from `model.py` so that `generate.py` can use them without importing the model module
(which imports `generate` lazily for `Llama.generate`): no import cycle.
"""
from __future__ import annotations

import torch

from .errors import MiniLlamaError


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
                         device: torch.device, sliding_window: int | None = None) -> torch.Tensor | None:
    """Boolean `[B, 1, T, S]` mask (True = may attend), or None when SDPA's own causal path is exact.

    None is returned without padding when the new tokens start at 0 (plain causal) or are a single token
    (it may attend to every cached position), unless a sliding window hides some of those keys. Each query
    may always attend to itself, so a padding query never has an empty softmax row (which would put NaN
    into later layers' keys and values).

    Args:
        attention_mask: 1 = real token, 0 = padding, over all S positions; None = no padding.
        start_pos: Cache slot of the first new token.
        t: Number of new tokens.
        device: Where the mask is built.
        sliding_window: Mistral's window W: a query at slot q sees the keys at slots q - W < k <= q
            (transformers' `sliding_window_overlay`; slots, not positions, so left padding counts, as there).

    Shapes:
        attention_mask: [B, S] with S = start_pos + T -> [B, 1, T, S] or [1, 1, T, S]
    """
    s = start_pos + t
    windowed = sliding_window is not None and s > sliding_window
    if attention_mask is None and (start_pos == 0 or t == 1) and not windowed:
        return None
    q_pos = torch.arange(start_pos, s, device=device)[:, None]  # [T, 1]
    k_pos = torch.arange(s, device=device)[None, :]  # [1, S]
    mask = k_pos <= q_pos  # [T, S]
    if windowed:
        mask = mask & (k_pos > q_pos - sliding_window)  # Mistral 7B (Jiang et al. 2023), Sec. 2: window W
    mask = mask[None, None]  # [1, 1, T, S]
    if attention_mask is not None:
        keep = attention_mask[:, None, None, :s].bool() | (k_pos == q_pos)[None, None]  # [B, 1, T, S]
        mask = mask & keep
    return mask


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Boolean `[B, 1, T, T]` mask of packed rows: causal, and a token sees only tokens of its own segment
    (padding-free packing: several examples share a row, attention never crosses from one to another).

    Shapes:
        segment_ids: [B, T] (equal ids = one example; padding may be a segment of its own) -> [B, 1, T, T]
    """
    t = segment_ids.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=segment_ids.device).tril()  # [T, T]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # [B, T, T]
    return (same & causal)[:, None]  # [B, 1, T, T]


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return compiler.is_compiling()
    return torch._dynamo.is_compiling()  # torch < 2.3


def check_input_ids(input_ids, vocab_size: int) -> None:
    """Raise MiniLlamaError unless `input_ids` is a 2-D integer tensor of ids in [0, vocab_size).

    Shapes:
        input_ids: [B, T] with B >= 1 and T >= 1
    """
    if _compiling():  # inside torch.compile a host sync would break the graph; eager calls check
        return
    if not isinstance(input_ids, torch.Tensor):
        raise MiniLlamaError(f"input_ids must be a torch.Tensor of token ids, got {type(input_ids).__name__}")
    if input_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise MiniLlamaError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    if input_ids.dim() != 2 or 0 in input_ids.shape:
        raise MiniLlamaError(f"input_ids must be [batch, length] with at least one token, got shape "
                             f"{list(input_ids.shape)}")
    if input_ids.is_meta:  # shapes only (e.g. counting parameters): no values to check
        return
    lowest, highest = torch.stack(torch.aminmax(input_ids)).tolist()  # one host sync
    if lowest < 0 or highest >= vocab_size:
        bad = lowest if lowest < 0 else highest
        raise MiniLlamaError(f"input_ids: token id {bad} is outside the model's vocabulary [0, {vocab_size}) "
                             "(a tokenizer that does not match the model?)")
