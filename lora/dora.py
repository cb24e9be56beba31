"""`DoRALinear`: LoRA with the weight decomposed into a magnitude and a direction (Liu et al. 2024, arXiv:2402.09353).

    W' = m * V / ||V||_c,   V = W0 + s B A                  # Eq. 5, Liu et al. 2024
    y  = W' x + b

with W0 in R^{d x k} (d = out_features, k = in_features), B in R^{d x r}, A in R^{r x k}, s = alpha / r (as
LoRA), the magnitude m in R^d initialised to ||W0||_c (so W' = W0 at initialisation, where B = 0), and
||.||_c the norm of each of the d rows of V (the paper's "column-wise" norm of W in R^{k x d}; PEFT's
`get_weight_norm` takes `dim=1` of the [out, in] weight, the same rows). The trainable parameters are A, B and
m. As the paper suggests (Sec. 4.3, and as PEFT does) ||V||_c is treated as a constant in backward: it is
recomputed from the current A and B at every forward but detached, so no gradient flows through it.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillama.nf4.linear import NF4Linear

from lora.layer import LoRALinear


class DoRALinear(LoRALinear):
    """A `LoRALinear` whose adapted weight is `m * (W0 + s B A) / ||W0 + s B A||_c` (Eq. 5, Liu et al. 2024).

    Everything of `LoRALinear` holds (frozen `weight`/`bias` or a 4-bit `base_layer`, `lora_A`, `lora_B`,
    their dtype, merge/unmerge/to_linear); one parameter is added:

    * `lora_magnitude_vector` [out]: the magnitude m, in the LoRA dtype. Its `state_dict` key
      `...q_proj.lora_magnitude_vector` is PEFT's file key without `base_model.model.`, as for A and B.

    On a 4-bit base (QDoRA) the norm is taken of the dequantised W0 (in the LoRA dtype, float32).

    Args:
        base, r, alpha, dropout, use_rslora: as `LoRALinear`.
    """

    def __init__(self, base: nn.Linear | NF4Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0,
                 use_rslora: bool = False):
        super().__init__(base, r=r, alpha=alpha, dropout=dropout, use_rslora=use_rslora)
        self.lora_magnitude_vector = nn.Parameter(self.weight_norm())  # m = ||W0 + s B A||_c (= ||W0||_c, B = 0)
        self._merged_norm: torch.Tensor | None = None                 # ||V||_c at merge time, for unmerge

    def base_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """W0 as a dense [out, in] tensor in `dtype` (dequantised from 4 bits for an `NF4Linear` base)."""
        return self.base_layer.dequantize(dtype) if self.quantized else self.weight.to(dtype)

    @torch.no_grad()
    def weight_norm(self) -> torch.Tensor:
        """`||V||_c = ||W0 + s B A||` of each output row: [out], in the LoRA dtype (float32 or wider, also under
        autocast), no gradient (Sec. 4.3)."""
        device = self.lora_A.weight.device.type
        with torch.autocast(device, enabled=False) if device != "meta" else contextlib.nullcontext():
            delta = self.delta_weight()                               # s B A: [d, k]
            v = self.base_weight(delta.dtype) + delta                 # V: [d, k]
            return torch.linalg.vector_norm(v, dim=1).to(self.lora_A.weight.dtype)  # [d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute `W' x + b` with `W' = m (W0 + s B A) / ||W0 + s B A||_c` (Eq. 5), as a sum of matmuls with x.

        With x~ = dropout(x) on the adapter's path (PEFT's rule: W0 x keeps the whole input),

            y = W0 x + b + (m / ||V||_c - 1) W0 x~ + (m / ||V||_c) s B A x~

        which, without dropout (x~ = x; eval mode), is `(m / ||V||_c) (W0 x + s B A x) + b = W' x + b`: W' is
        never formed. Shape legend: `...` = leading dims (batch B, time T), k = in_features, d = out_features.
        x: [..., k] -> y: [..., d], in the base output's dtype.
        """
        if self.merged:                                    # weight holds W'
            return F.linear(x, self.weight, self._bias())  # [..., d]
        base = self._w0x(x)                                # W0 x: [..., d]
        x_lora = self.lora_dropout(x.to(self.lora_A.weight.dtype))   # x~: [..., k]
        no_dropout = isinstance(self.lora_dropout, nn.Identity) or not self.training
        base_lora = base if no_dropout else self._w0x(x_lora.to(x.dtype))  # W0 x~: [..., d]
        lora = self.lora_B(self.lora_A(x_lora)) * self.scaling      # s B A x~: [..., d]
        scale = self.lora_magnitude_vector / self.weight_norm()     # m / ||V||_c: [d], the norm detached (Sec. 4.3)
        y = base + (scale - 1) * base_lora + scale * lora           # [..., d]  # Eq. 5, Liu et al. 2024
        bias = self._bias()
        if bias is not None:
            y = y + bias
        return y.to(base.dtype)                            # [..., d]

    def _w0x(self, x: torch.Tensor) -> torch.Tensor:
        """`W0 x` without the bias, by the base layer itself (a 4-bit base dequantises inside its matmul; no copy
        of W0 is kept for backward). x: [..., k] -> [..., d]."""
        if not self.quantized:
            return F.linear(x, self.weight)
        y = self.base_layer(x)                             # W0 x + b
        return y if self.base_layer.bias is None else y - self.base_layer.bias

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the weight: `W <- m (W0 + s B A) / ||W0 + s B A||_c` (Eq. 5). A no-op if merged.

        Formed in float32 (or wider), rounded once to the weight's dtype; ||V||_c is kept for `unmerge`
        (PEFT caches it too: it cannot be recomputed from the merged weight).
        """
        if self.merged:
            return
        norm = self.weight_norm()                                         # ||V||_c: [d]
        delta = self.delta_weight()                                       # s B A: [d, k]
        scale = (self.lora_magnitude_vector.to(delta.dtype) / norm.to(delta.dtype))[:, None]  # [d, 1]
        merged = scale * (self.base_weight(delta.dtype) + delta)          # W': [d, k]  # Eq. 5, Liu et al. 2024
        if self.quantized:  # a dense copy in the compute dtype; the 4-bit W0 is kept (unmerge drops the copy)
            self.weight = nn.Parameter(merged.to(self.base_layer.compute_dtype), requires_grad=False)
        else:
            self.weight.copy_(merged.to(self.weight.dtype))
        self._merged_norm = norm
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge()`: `W0 <- W ||V||_c / m - s B A` (with the ||V||_c of merge time). A no-op if not merged.

        Exact for a 4-bit base (the dense copy is dropped); otherwise up to roundings of the weight's dtype.
        """
        if not self.merged:
            return
        if self.quantized:
            self.weight, self.merged, self._merged_norm = None, False, None
            return
        delta = self.delta_weight()
        scale = (self.lora_magnitude_vector.to(delta.dtype) / self._merged_norm.to(delta.dtype))[:, None]
        self.weight.copy_((self.weight.to(delta.dtype) / scale - delta).to(self.weight.dtype))
        self.merged, self._merged_norm = False, None

    def extra_repr(self) -> str:
        return super().extra_repr() + ", dora=True"
