"""`NF4Linear`: a frozen linear layer whose weight is stored in NF4 and dequantised inside `forward`.

    Y = X doubleDequant(c1, c2, W_NF4) (+ b)           # Eq. 5 of Dettmers et al. 2023, without the LoRA term
                                                        #   (LoRALinear adds L1 L2 around this layer)

The dequantised matrix exists only inside one matmul: the autograd function below keeps a reference to
the 4-bit storage, not the 16-bit weight, and dequantises again in backward to form dL/dX = dL/dY W (no
gradient is ever computed for W). So training memory holds the 4-bit base plus one layer's transient
16-bit weight, as in bitsandbytes' `MatMul4Bit`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from minillama.nf4.blockwise import n_blocks
from minillama.nf4.quantize import BLOCKSIZE, NESTED_BLOCKSIZE, NF4Weight, quantize_nf4

_STORAGE = ("packed", "absmax", "nested_absmax", "nested_offset")


class _DequantLinear(torch.autograd.Function):
    """y = x W^T + b with W dequantised on the fly in forward and again in backward; W and b get no gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bias: torch.Tensor | None, weight: NF4Weight, dtype: torch.dtype):
        ctx.weight, ctx.dtype = weight, dtype  # the 4-bit storage, not a 16-bit copy
        return F.linear(x, weight.dequantize(dtype), bias)  # [..., in] @ [in, out] (+ [out]) -> [..., out]

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        w = ctx.weight.dequantize(ctx.dtype)  # [out, in]
        return grad_out.to(ctx.dtype) @ w, None, None, None  # dL/dX: [..., out] @ [out, in] -> [..., in]


class NF4Linear(nn.Module):
    """`y = x W^T + b` with W in NF4 (block 64, optionally double-quantised) and frozen.

    Buffers (bitsandbytes' `QuantState` names): `packed` uint8 [ceil(out*in / 2)], `absmax` (float32, or
    uint8 with double quantisation) [ceil(out*in / 64)], `nested_absmax` float32 [ceil(out*in / 16384)] and
    `nested_offset` float32 [] (double quantisation only). `bias` [out] is a frozen parameter in
    `compute_dtype`. Casting the module (`.to(torch.bfloat16)`, `.half()`) changes `compute_dtype` and the
    bias, never the storage; moving it (`.to("cuda")`) moves everything.

    Args:
        in_features, out_features: the matrix is [out_features, in_features], as `nn.Linear`.
        bias: whether there is a bias.
        compute_dtype: the dtype the weight is dequantised to and the matmul runs in.
        double_quant: store the block constants double-quantised.
        device: where the (empty) buffers are created; "meta" for a shape-only module.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, *,
                 compute_dtype: torch.dtype = torch.float32, double_quant: bool = True,
                 device: torch.device | str | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype, self.double_quant, self.blocksize = compute_dtype, double_quant, BLOCKSIZE
        n = in_features * out_features
        nb = n_blocks(n, BLOCKSIZE)
        self.register_buffer("packed", torch.zeros((n + 1) // 2, dtype=torch.uint8, device=device))
        if double_quant:
            self.register_buffer("absmax", torch.zeros(nb, dtype=torch.uint8, device=device))
            self.register_buffer("nested_absmax", torch.zeros(n_blocks(nb, NESTED_BLOCKSIZE), device=device))
            self.register_buffer("nested_offset", torch.zeros((), device=device))
        else:
            self.register_buffer("absmax", torch.zeros(nb, device=device))
            self.register_buffer("nested_absmax", None)
            self.register_buffer("nested_offset", None)
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=compute_dtype, device=device),
                                 requires_grad=False) if bias else None

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    compute_dtype: torch.dtype | None = None, double_quant: bool = True) -> "NF4Linear":
        """Quantise `weight` [out, in] (on its device) into a new layer; `compute_dtype` defaults to its dtype."""
        out_features, in_features = weight.shape
        dtype = compute_dtype or weight.dtype
        layer = cls(in_features, out_features, bias=bias is not None, compute_dtype=dtype,
                    double_quant=double_quant, device="meta")
        q = quantize_nf4(weight, double_quant=double_quant)
        for name in _STORAGE:
            setattr(layer, name, getattr(q, name))  # replaces the meta placeholders
        if bias is not None:
            layer.bias = nn.Parameter(bias.detach().to(dtype), requires_grad=False)
        return layer

    @classmethod
    def from_linear(cls, linear: nn.Linear, compute_dtype: torch.dtype | None = None,
                    double_quant: bool = True) -> "NF4Linear":
        """Quantise an `nn.Linear` (its weight and bias are read, not changed)."""
        return cls.from_weight(linear.weight, linear.bias, compute_dtype, double_quant)

    def quantized_weight(self) -> NF4Weight:
        """The storage as an `NF4Weight` (views of the buffers, no copy)."""
        return NF4Weight(self.packed, self.absmax, self.nested_absmax, self.nested_offset,
                         (self.out_features, self.in_features), self.blocksize)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """W as a dense [out, in] tensor in `dtype` (default: `compute_dtype`)."""
        return self.quantized_weight().dequantize(dtype or self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shapes: x [..., in] (any float dtype; cast to `compute_dtype`) -> [..., out] in `compute_dtype`."""
        return _DequantLinear.apply(x.to(self.compute_dtype), self.bias, self.quantized_weight(),
                                    self.compute_dtype)  # [..., out]

    def _apply(self, fn, recurse: bool = True):
        """Keep the storage dtypes under `.to(dtype)`/`.half()`; follow device moves; track the compute dtype."""
        probe = fn(torch.empty(0, dtype=self.compute_dtype, device=self.packed.device))
        saved = {name: getattr(self, name) for name in _STORAGE}
        super()._apply(fn, recurse)
        for name, t in saved.items():
            if t is not None:
                setattr(self, name, t.to(probe.device))
        if probe.is_floating_point():
            self.compute_dtype = probe.dtype
        return self

    def extra_repr(self) -> str:
        dtype = str(self.compute_dtype).removeprefix("torch.")
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"nf4 blocksize={self.blocksize}, double_quant={self.double_quant}, compute_dtype={dtype}")
