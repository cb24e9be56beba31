"""Autoregressive generation with a preallocated KV cache: one model step per new token."""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import torch

from .errors import MiniLlamaError
from .sampling import sample_next
from .static_decode import StaticDecoder


@torch.no_grad()
def generate(model, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int = 0, eos_id: int | Sequence[int] | None = 2,
             attention_mask: torch.Tensor | None = None, seed: int | None = None, pad_id: int = 0,
             on_token: Callable[[torch.Tensor], None] | None = None, cuda_graph: bool = False) -> torch.Tensor:
    """Continue each prompt of a (left-padded) batch by up to `max_new_tokens` tokens.

    The prompt is run once through the model (prefill), filling a cache sized for prompt + new tokens;
    every following step feeds only the newest token. With padding, each row's positions are counted
    from its first real token, so a padded row generates exactly what the prompt alone would.

    Args:
        model: A `minillama.Llama`.
        input_ids: Prompt ids, left-padded when the prompts differ in length.
        max_new_tokens: Most tokens to add.
        temperature: 0 = greedy; > 0 = sampling from softmax(logits / temperature).
        top_p: Nucleus sampling mass (1.0 = off).
        top_k: Sample only among the k most likely tokens (0 = off).
        eos_id: A row stops after producing it, or any of several (Llama-3 Instruct ends a turn with
            `<|eot_id|>` and a document with `<|end_of_text|>`: pass `tokenizer.eos_ids`). None = never
            stop early.
        attention_mask: 1 for real tokens, 0 for (left) padding; None = no padding.
        seed: Seeds a private `torch.Generator`, so sampling is reproducible and the global RNG untouched.
        pad_id: Written after a row's EOS while other rows continue.
        on_token: Called after each step with the new tokens `[B]` (for streaming).
        cuda_graph: Decode with the static-shape step of `static_decode.py`, replayed as one CUDA graph
            per token on a GPU (much less launch overhead at small batch); on a CPU it runs eagerly.

    A row that has produced EOS leaves the batch (once an eighth of the rows still decoding have), so the
    steps after it compute only the rows still decoding: with answers of very different lengths, most of
    a static batch's work would go to rows already finished.

    Returns:
        Prompt and new tokens, `[B, T + n]` with n <= max_new_tokens (fewer when every row hit EOS).
        Generation never goes past the model's context, `config.max_position_embeddings` positions:
        when T + max_new_tokens exceeds it, at most `max_position_embeddings - T` tokens are added and a
        `ContextLimitWarning` says so (those rows end as "length" in `finish_reasons`, as in Meta's
        `generate`, which caps the total length at `max_seq_len`).

    Raises:
        MiniLlamaError: ids outside the vocabulary, a prompt that fills the context, bad settings.

    Shapes:
        input_ids, attention_mask: [B, T] -> [B, T + n]
    """
    check_input_ids(input_ids, model.config.vocab_size)
    check_settings(max_new_tokens, temperature, top_p, top_k, eos_id, pad_id, seed, model.config.vocab_size)
    device = model.device
    stop_ids = None if eos_id is None else torch.tensor(eos_ids(eos_id), device=device)  # [n_eos]
    input_ids = input_ids.to(device)
    b, t0 = input_ids.shape
    limit = model.config.max_position_embeddings
    if t0 >= limit and max_new_tokens > 0:
        raise MiniLlamaError(f"input_ids: the prompt has {t0} tokens; the model's context is max_position_embeddings="
                             f"{limit} positions, so no token can be added")
    if t0 + max_new_tokens > limit:
        warnings.warn(f"generation stops at the model's context of {limit} positions: {limit - t0} new tokens "
                      f"instead of max_new_tokens={max_new_tokens} after a {t0}-token prompt", ContextLimitWarning,
                      stacklevel=3)
        max_new_tokens = limit - t0
    if max_new_tokens == 0:
        return input_ids
    full_mask = None
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise MiniLlamaError(f"attention_mask shape {list(attention_mask.shape)} != input_ids shape "
                                 f"{list(input_ids.shape)}")
        attention_mask = attention_mask.to(device)
        if not bool(attention_mask[:, -1].all()):
            raise MiniLlamaError("attention_mask: prompts must be left-padded (last column all ones)")
        if not bool(attention_mask.all()):
            full_mask = torch.ones(b, t0 + max_new_tokens, dtype=torch.long, device=device)  # [B, T + N]
            full_mask[:, :t0] = attention_mask
    generator = torch.Generator(device).manual_seed(seed) if seed is not None else None

    cache = model.make_cache(b, t0 + max_new_tokens)
    out = torch.full((b, t0 + max_new_tokens), pad_id, dtype=torch.long, device=device)  # [B, T + N]
    out[:, :t0] = input_ids
    finished = torch.zeros(b, dtype=torch.bool, device=device)
    prompt_mask = full_mask[:, :t0] if full_mask is not None else None
    logits = model(input_ids, attention_mask=prompt_mask, cache=cache, logits_to_keep=1)[:, -1]  # [B, V]
    if prompt_mask is None:
        next_pos = torch.full((1, 1), t0, dtype=torch.long, device=device)  # [1, 1]
    else:
        next_pos = prompt_mask.sum(-1, keepdim=True)  # [B, 1]: the real tokens so far (`positions_from_mask`)
    decoder = None
    if cuda_graph:
        key_mask = torch.zeros(b, t0 + max_new_tokens, dtype=torch.bool, device=device)  # [B, T + N]
        key_mask[:, :t0] = True if prompt_mask is None else prompt_mask.bool()
        decoder = StaticDecoder(model, cache, key_mask, capture=True)
    n, rows = 0, torch.arange(b, device=device)  # [B']: the batch rows still decoding
    for step in range(max_new_tokens):
        token = sample_next(logits, temperature, top_p, top_k, generator)  # [B']
        if stop_ids is not None:
            token = token.masked_fill(finished, pad_id)
            finished |= torch.isin(token, stop_ids)
        out[rows, t0 + step] = token
        n = step + 1
        if on_token is not None:
            on_token(out[:, t0 + step])  # [B]: the finished rows' pad_id included
        done = 0 if stop_ids is None else int(finished.sum())
        if step == max_new_tokens - 1 or done == len(finished):
            break
        if decoder is None and done and done >= len(finished) // 8:
            # Finished rows leave the batch (and the cache): every later step computes only the rows still
            # decoding. Waiting for an eighth of them pays the cache copy once for several rows.
            keep = (~finished).nonzero().squeeze(1)  # [B'']
            rows = rows[keep]
            token, finished = token[keep], finished[keep]
            for layer_cache in cache:
                layer_cache.keep(keep)
            if full_mask is not None:
                full_mask, next_pos = full_mask[keep], next_pos[keep]
        pos = t0 + step
        if decoder is not None:
            logits = decoder.step(token, next_pos, pos)
        elif full_mask is None:
            logits = model(token[:, None], cache=cache, start_pos=pos)[:, -1]
        else:
            logits = model(token[:, None], attention_mask=full_mask[:, :pos + 1], position_ids=next_pos,
                           cache=cache, start_pos=pos)[:, -1]
        next_pos = next_pos + 1
    return out[:, :t0 + n]


class ContextLimitWarning(UserWarning):
    """`generate` was asked for more tokens than the model's context holds; it stopped at the limit."""


def check_input_ids(input_ids: torch.Tensor, vocab_size: int) -> None:
    """Raise MiniLlamaError unless every id of a prompt is in [0, vocab_size) (a tokenizer that does not match
    the model): one host sync, once per `generate` call, where the prompt enters.

    Shapes:
        input_ids: [B, T]
    """
    lowest, highest = torch.stack(torch.aminmax(input_ids)).tolist()
    if lowest < 0 or highest >= vocab_size:
        bad = lowest if lowest < 0 else highest
        raise MiniLlamaError(f"input_ids: token id {bad} is outside the model's vocabulary [0, {vocab_size}) "
                             "(a tokenizer that does not match the model?)")


def check_settings(max_new_tokens, temperature, top_p, top_k, eos_id, pad_id, seed, vocab_size: int) -> None:
    """Raise MiniLlamaError naming the first generation setting out of range (a value of a wrong type gets
    Python's own error)."""
    ids = () if eos_id is None else eos_ids(eos_id)
    problems = [
        (max_new_tokens >= 0, f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}"),
        (math.isfinite(temperature) and temperature >= 0, f"temperature must be a finite number >= 0, got {temperature!r}"),
        (0.0 < top_p <= 1.0, f"top_p must be a number in (0, 1], got {top_p!r}"),
        (top_k >= 0, f"top_k must be an integer >= 0, got {top_k!r}"),
        (eos_id is None or (len(ids) > 0 and all(0 <= i < vocab_size for i in ids)),
         f"eos_id must be None, a token id or a non-empty list of token ids in [0, {vocab_size}), got {eos_id!r}"),
        (0 <= pad_id < vocab_size, f"pad_id must be a token id in [0, {vocab_size}), got {pad_id!r}"),
        (seed is None or 0 <= seed < 2**64, f"seed must be None or an integer in [0, 2**64), got {seed!r}"),
    ]
    for ok, problem in problems:
        if not ok:
            raise MiniLlamaError(f"generate: {problem}")


def left_pad(prompts: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack prompts of different lengths, padding on the left.

    Returns:
        input_ids and attention_mask, both `[B, max_len]`.
    """
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids, mask


def eos_ids(eos_id: int | Sequence[int]) -> tuple[int, ...]:
    """`eos_id` as a tuple: one id (Llama-2, Mistral) or several (Llama-3)."""
    return (eos_id,) if isinstance(eos_id, int) else tuple(eos_id)


def finish_reasons(output: torch.Tensor, prompt_len: int, eos_id: int | Sequence[int]) -> list[str]:
    """"stop" for each row of a `generate` output that produced `eos_id` (or any of several EOS ids),
    "length" for the others (truncated at max_new_tokens), as the project's record format names them.

    Shapes:
        output: [B, prompt_len + n] -> B strings
    """
    stop = torch.tensor(eos_ids(eos_id), device=output.device)  # [n_eos]
    return ["stop" if bool(torch.isin(row, stop).any()) else "length" for row in output[:, prompt_len:]]
