"""`LoRALinear`: a frozen linear layer plus a trainable low-rank update (Hu et al. 2021, Sec. 4.1).

    W = W0 + dW = W0 + B A                                  # Eq. 2 of the reproduced paper (Sec. 3.2)
    h = W0 x + dW x = W0 x + B A x                          # Eq. 3, Hu et al. 2021
    y = W0 x + b + (alpha / r) * B A dropout(x)             # what forward() computes (Hu et al. 2021, Sec. 4.1)

with W0 in R^{d x k} (d = out_features, k = in_features), B in R^{d x r}, A in R^{r x k}, r << min(d, k).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillama.nf4.linear import NF4Linear


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` (W0, b) with a trainable rank-`r` update `(alpha / r) * B @ A`.

    Attribute names are chosen so that no key mapping is needed anywhere:

    * `weight` [out, in] and `bias` [out] are the wrapped layer's own `Parameter` objects (not
      copies), registered directly on this module and frozen. A wrapped `q_proj` therefore still has
      the key `...q_proj.weight`, exactly the Hugging Face checkpoint key, so `from_pretrained`,
      `save_pretrained` and `load_state_dict` of the base model work unchanged.
    * `lora_A.weight` [r, in] and `lora_B.weight` [out, r] are the keys PEFT uses inside its
      `base_layer`/adapter wrapping once the adapter name is dropped, so the PEFT file key of a
      parameter is simply `"base_model.model." + <our state_dict key>`.

    A is initialised like `nn.Linear` (Kaiming-uniform, a = sqrt(5)) and B with zeros, so at
    initialisation `B @ A = 0` and the layer computes exactly the base layer (Sec. 4.1, Hu et al. 2021,
    which says "random Gaussian" for A; their reference code `loralib` and PEFT use Kaiming-uniform).
    The LoRA parameters are float32 when the base weight is float16/bfloat16 (as PEFT's default
    `autocast_adapter_dtype=True`), otherwise they take the base weight's dtype.

    A 4-bit base (`NF4Linear`, QLoRA) is wrapped the same way, with float32 A and B, except that it is kept
    whole as `base_layer` (PEFT's name; its buffers are `...q_proj.base_layer.packed` etc.) and `weight` is
    None: W0 exists only as 4-bit codes, dequantised inside the base layer's forward. `merge()` then means
    "materialise": `weight` becomes a dense `compute_dtype` copy of `dequant(W0) + dW` (rounded once) and
    forward uses it, while the 4-bit base is kept, so `unmerge()` is exact (it drops the dense copy).
    `to_linear()` returns that dense layer: merging into a 4-bit base always dequantises (nothing is
    re-quantised, which PEFT's merge into bitsandbytes 4-bit does, at the cost of a second rounding).

    Args:
        base: the `nn.Linear` or `NF4Linear` to adapt; its parameters are taken over and frozen.
        r: rank of the update.
        alpha: scaling numerator; the update is multiplied by `alpha / r`.
        dropout: dropout probability on the input of the LoRA path only.
        use_rslora: scale by `alpha / sqrt(r)` instead (Kalajdzievski 2023; PEFT's `use_rslora`).
    """

    def __init__(self, base: nn.Linear | NF4Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0,
                 use_rslora: bool = False):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.r, self.lora_alpha, self.use_rslora = r, alpha, use_rslora
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r  # Sec. 4.1, Hu et al. 2021
        if isinstance(base, NF4Linear):
            self.base_layer = base.requires_grad_(False)  # W0 in 4 bits (+ frozen bias): QLoRA
            self.weight = self.bias = None                 # `weight` holds dense dequant(W0) + dW while merged
            dtype, device = base.compute_dtype, base.packed.device
        else:
            self.base_layer = None
            self.weight = base.weight                  # W0: [out, in], frozen, same Parameter object
            self.bias = base.bias                      # b: [out] or None, frozen
            self.weight.requires_grad_(False)
            if self.bias is not None:
                self.bias.requires_grad_(False)
            dtype, device = base.weight.dtype, base.weight.device

        lora_dtype = torch.float32 if (not dtype.is_floating_point or dtype in (torch.float16, torch.bfloat16)) \
            else dtype
        self.lora_A = nn.Linear(self.in_features, r, bias=False, device=device, dtype=lora_dtype)   # A: [r, in]
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=device, dtype=lora_dtype)  # B: [out, r]
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A ~ Kaiming-uniform(a = sqrt 5) as loralib/PEFT, B = 0, so that B @ A = 0 (Sec. 4.1, Hu et al. 2021)."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute `W0 x + b + (alpha / r) * B A dropout(x)`.

        Shape legend: `...` = any leading dims (batch B, time T), k = in_features, d = out_features.
        x: [..., k] -> y: [..., d]. The LoRA path runs in the dtype of A (e.g. float32 under a bfloat16
        base); the sum is formed in the promoted dtype and returned in the base output's dtype.
        """
        if self.merged:                                    # weight holds W0 + scaling * B A
            return F.linear(x, self.weight, self._bias())  # [..., d]
        y = self.base_layer(x) if self.quantized else F.linear(x, self.weight, self.bias)  # W0 x + b: [..., d]
        x_lora = self.lora_dropout(x.to(self.lora_A.weight.dtype))   # [..., k]
        h = self.lora_A(x_lora)                            # A x: [..., r]
        delta = self.lora_B(h) * self.scaling              # (alpha / r) B A x: [..., d]  # Eq. 3, Hu et al. 2021
        return (y + delta).to(y.dtype)                     # [..., d]

    def delta_weight(self) -> torch.Tensor:
        """`dW = (alpha / r) * B @ A`: [out, in], in at least float32 (paper Eq. 2 with Hu et al.'s alpha / r)."""
        dtype = torch.promote_types(self.lora_A.weight.dtype, torch.float32)
        b, a = self.lora_B.weight.to(dtype), self.lora_A.weight.to(dtype)  # [d, r], [r, k]
        return (b @ a) * self.scaling                      # [d, k]

    @property
    def quantized(self) -> bool:
        """Whether W0 is stored in 4 bits (an `NF4Linear` base)."""
        return self.base_layer is not None

    def _bias(self) -> torch.Tensor | None:
        return self.base_layer.bias if self.quantized else self.bias

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the frozen weight: `W0 <- W0 + dW`. A no-op if already merged.

        The sum is formed in float32 (or wider) and rounded once to the weight's dtype, so a
        bfloat16 base gets the best bfloat16 approximation of `W0 + dW`. After merging, `forward`
        skips the LoRA path, so the layer computes the same function with one matmul.
        """
        if self.merged:
            return
        delta = self.delta_weight()
        if self.quantized:  # dequantise in float32, add, round once to the compute dtype; W0 stays in 4 bits
            w0 = self.base_layer.dequantize(delta.dtype)
            self.weight = nn.Parameter((w0 + delta).to(self.base_layer.compute_dtype), requires_grad=False)
        else:
            self.weight.copy_((self.weight.to(delta.dtype) + delta).to(self.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo `merge()`: `W0 <- W - dW`. A no-op if not merged.

        Exact when `dW = 0` (e.g. at initialisation); otherwise W0 is recovered up to one rounding of
        the weight's dtype per element (floating-point addition is not invertible in general). Always
        exact for a 4-bit base: the dense merged copy is dropped and the 4-bit W0 was never changed.
        """
        if not self.merged:
            return
        if self.quantized:
            self.weight = None
            self.merged = False
            return
        delta = self.delta_weight()
        self.weight.copy_((self.weight.to(delta.dtype) - delta).to(self.weight.dtype))
        self.merged = False

    def to_linear(self) -> nn.Linear:
        """A plain `nn.Linear` computing the same function (merges first); it shares `weight` and `bias`.

        For a 4-bit base the weight is the dense merged `dequant(W0) + dW` in the compute dtype.
        """
        self.merge()
        bias = self._bias()
        linear = nn.Linear(self.in_features, self.out_features, bias=bias is not None, device="meta")
        linear.weight = self.weight
        if bias is not None:
            linear.bias = bias
        return linear

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self._bias() is not None}, r={self.r}, lora_alpha={self.lora_alpha}, "
                f"scaling={self.scaling:g}, merged={self.merged}")
