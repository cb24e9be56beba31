"""Choosing the next token from logits: greedy, temperature, top-k and nucleus (top-p) sampling."""
from __future__ import annotations

import torch


def sample_top_p(probs: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2020, Eq. 2), written as in Meta's llama/generation.py:
    keep the smallest set of most likely tokens whose mass reaches `p`, renormalise, sample.

    Shapes:
        probs: [B, V] -> [B]
    """
    probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)  # [B, V]
    probs_sum = torch.cumsum(probs_sort, dim=-1)
    probs_sort[probs_sum - probs_sort > p] = 0.0  # drop tokens once the mass before them exceeds p
    probs_sort.div_(probs_sort.sum(dim=-1, keepdim=True))
    choice = torch.multinomial(probs_sort, num_samples=1, generator=generator)  # [B, 1]
    return torch.gather(probs_idx, -1, choice).squeeze(-1)  # [B]


def sample_next(logits: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The next token of each row.

    Args:
        logits: Next-token logits.
        temperature: 0 means greedy (argmax); otherwise logits are divided by it before the softmax.
        top_p: Nucleus mass (1.0 = off).
        top_k: Keep only the k most likely tokens (0 = off).
        generator: Source of randomness (seeded for reproducible sampling).

    Shapes:
        logits: [B, V] -> [B] (int64)
    """
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # [B, V]
    if top_p < 1.0:
        return sample_top_p(probs, top_p, generator)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # [B]
