"""Root-mean-square layer normalisation (Zhang & Sennrich 2019), as used by Llama-2."""
from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """`y = w * x / sqrt(mean(x^2) + eps)`, computed in float32 (float64 for float64 inputs) and cast back,
    as Hugging Face does.

    Args:
        dim: Size of the last dimension.
        eps: Added to the mean square for numerical stability (`rms_norm_eps`).
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last dimension.

        Shapes:
            x: [..., dim] -> [..., dim] (same dtype as x)
        """
        input_dtype = x.dtype
        h = x.to(torch.promote_types(input_dtype, torch.float32))
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)  # Eq. 4, Zhang & Sennrich 2019
        return self.weight * h.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.variance_epsilon}"
