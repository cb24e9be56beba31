"""The SwiGLU feed-forward block of Llama-2 (Shazeer 2020; Touvron et al. 2023, Sec. 2.2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LlamaMLP(nn.Module):
    """`down_proj(silu(gate_proj(x)) * up_proj(x))`, no biases, Swish with beta = 1 (i.e. SiLU).

    Note: this is the real Llama-2 MLP. The paper's Eq. 1 writes a different formula (see
    docs/paper-vs-code.md); the released weights only make sense with this one.

    Args:
        hidden_size: Model width d.
        intermediate_size: Hidden width of the MLP (11008 for Llama-2-7B).
    """

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: x: [B, T, d] -> [B, T, d]."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # FFN_SwiGLU, Shazeer 2020 Sec. 2
