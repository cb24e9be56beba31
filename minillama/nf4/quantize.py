"""`NF4Weight`: a weight matrix in QLoRA's storage format, with optional double quantisation.

    W  ~ NF4[packed] * c2                                        # blockwise NF4, block 64 (Sec. 3)
    c2 ~ dynamic8[absmax] * nested_absmax + nested_offset        # double quantisation (Sec. 3, "Double
                                                                 #   Quantization"): the block-64 constants
                                                                 #   minus their mean, in 8 bits, block 256

Storage per weight (n values, b = 64): n/2 bytes of codes plus either 4 bytes per block of 64 (0.5 bit per
parameter) or, double-quantised, 1 byte per block of 64 and 4 bytes per 256 blocks (8/64 + 32/(64*256) =
0.127 bit per parameter, QLoRA Sec. 3), plus one float32 mean. Layout and arithmetic are those of
bitsandbytes' `quantize_4bit(..., quant_type="nf4", compress_statistics=...)`: `packed` is its `weight`
bytes, `absmax`, `nested_absmax` and `nested_offset` are its `QuantState` fields of the same names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from minillama.nf4.blockwise import (dequantize_blockwise, dequantize_nf4_packed, n_blocks, quantize_blockwise,
                                     quantize_nf4_packed)

BLOCKSIZE = 64          # QLoRA Sec. 3 / bitsandbytes default for 4-bit
NESTED_BLOCKSIZE = 256  # "we use a blocksize of 256 for the second quantization" (QLoRA Sec. 3)


@dataclass(frozen=True)
class NF4Weight:
    """A tensor of shape `shape` stored as NF4 codes plus its (possibly double-quantised) block constants.

    Attributes:
        packed: uint8 [ceil(n / 2)], two codes per byte, high nibble first.
        absmax: float32 [ceil(n / 64)] without double quantisation; uint8 codes of the dynamic map with it.
        nested_absmax: float32 [ceil(n / 64 / 256)] (double quantisation only, else None).
        nested_offset: float32 [] the mean subtracted before the second quantisation (else None).
        shape: the original shape.
        blocksize: values per block (64).
    """

    packed: torch.Tensor
    absmax: torch.Tensor
    nested_absmax: torch.Tensor | None
    nested_offset: torch.Tensor | None
    shape: tuple[int, ...]
    blocksize: int = BLOCKSIZE

    @property
    def double_quant(self) -> bool:
        return self.nested_absmax is not None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of storage (codes plus constants)."""
        parts = (self.packed, self.absmax, self.nested_absmax, self.nested_offset)
        return sum(t.numel() * t.element_size() for t in parts if t is not None)

    def block_absmax(self) -> torch.Tensor:
        """The float32 constant of every block of 64 [ceil(n / 64)], undoing double quantisation if used."""
        if not self.double_quant:
            return self.absmax
        return dequantize_blockwise(self.absmax, self.nested_absmax, "dynamic", NESTED_BLOCKSIZE) + self.nested_offset

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The tensor `code[q] * absmax` (float32 product, rounded once to `dtype`) of shape `shape`."""
        flat = dequantize_nf4_packed(self.packed, self.block_absmax(), self.numel, self.blocksize, dtype)  # [n]
        return flat.view(self.shape)


def quantize_nf4(weight: torch.Tensor, double_quant: bool = True, blocksize: int = BLOCKSIZE) -> NF4Weight:
    """Quantise `weight` (float32, bfloat16 or float16, any shape, on any device) to NF4.

    Args:
        weight: the tensor; it is read, never modified.
        double_quant: also quantise the block constants (QLoRA's double quantisation).
        blocksize: values per block (QLoRA: 64).
    """
    if not weight.is_floating_point():
        raise ValueError(f"NF4 quantises floating-point tensors, got {weight.dtype}")
    packed, absmax = quantize_nf4_packed(weight.detach(), blocksize)  # [ceil(n/2)], [nb]
    if not double_quant:
        return NF4Weight(packed, absmax, None, None, tuple(weight.shape), blocksize)
    # The constants are positive: centre them so the signed 8-bit map is used fully. torch's float32 mean, as
    # bitsandbytes; on a CPU its last bit can depend on the thread count (the reduction order).
    offset = absmax.mean()
    codes, nested = quantize_blockwise(absmax - offset, "dynamic", NESTED_BLOCKSIZE)  # [nb] uint8, [nb2]
    return NF4Weight(packed, codes, nested, offset, tuple(weight.shape), blocksize)


def nf4_nbytes(numel: int, double_quant: bool = True, blocksize: int = BLOCKSIZE) -> int:
    """Bytes `quantize_nf4` stores for a tensor of `numel` values (the arithmetic of `NF4Weight.nbytes`)."""
    nb = n_blocks(numel, blocksize)
    if not double_quant:
        return (numel + 1) // 2 + 4 * nb
    return (numel + 1) // 2 + nb + 4 * n_blocks(nb, NESTED_BLOCKSIZE) + 4
