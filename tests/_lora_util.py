"""Helpers shared by the tests/test_lora_*.py files (tiny models, inputs, logits, snapshots)."""
from __future__ import annotations

import torch
import torch.nn as nn

from conftest import make_tiny_hf_llama  # noqa: F401  (re-exported for the lora tests)

VOCAB = 128


def input_ids(batch: int = 2, seq: int = 9, seed: int = 1, vocab: int = VOCAB) -> torch.Tensor:
    """Random token ids `[batch, seq]` (never the pad id 0)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (batch, seq), generator=g)


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """`[B, T, vocab]` logits of a transformers model (`.logits`), a PeftModel, or a minillama.Llama."""
    with torch.no_grad():
        out = model(ids)
    return out if isinstance(out, torch.Tensor) else out.logits


def randomize_lora(model: nn.Module, seed: int = 3, std: float = 0.2) -> None:
    """Give every LoRA A and B (ours or PEFT's) random values, so B @ A is far from zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every tensor in `state_dict()` (to prove that nothing changed)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    """The model has exactly the keys and values of `before`."""
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
