"""Blockwise absmax quantisation to a code book, and packing two 4-bit codes per byte.

    c_b  = absmax(X_b) = max_i |X_{b,i}|                       # quantisation constant of block b
    X^q  = argmin_j |code_j - X / c_b|                          # Eq. 1, Dettmers et al. 2023 (nearest code,
                                                                #   not round(): the code is not uniform)
    X    ~ code[X^q] * c_b                                      # Eq. 2, Dettmers et al. 2023 (dequantisation)

The input is flattened (row-major) and cut into blocks of `blocksize` consecutive values; the last block
may be shorter (its absmax is taken over what it has). As in bitsandbytes (CUDA kernel and CPU torch
kernel alike), X / c_b is computed as X * (1 / c_b) in float32 and clamped to [-1, 1], and the nearest
code value is found against the float32 midpoints between neighbouring codes, a tie going to the lower
code. An all-zero block has c_b = 0 and stores the code of 0.0.

Work is done a chunk of blocks at a time, so the float32 and index temporaries stay a few MB whatever the
tensor size (this is what keeps loading a model straight into 4 bits near the 4-bit size).
"""
from __future__ import annotations

import torch

from minillama.nf4.codebook import NF4_ZERO_INDEX, code_and_bounds

CHUNK = 1 << 20  # values per chunk of work (a multiple of every block size used: 64, 256)


def n_blocks(n: int, blocksize: int) -> int:
    """Number of blocks of `blocksize` needed for `n` values (the last one may be partial)."""
    return -(-n // blocksize)


def _quantize_chunk(x: torch.Tensor, bounds: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk: x [n] (any float dtype) -> codes int32 [n], absmax float32 [ceil(n / blocksize)]."""
    n = x.numel()
    nb = n_blocks(n, blocksize)
    xf = x.float()
    if nb * blocksize != n:  # a partial last block: zero padding changes no absmax
        xf = torch.nn.functional.pad(xf, (0, nb * blocksize - n))
    xf = xf.view(nb, blocksize)  # [nb, bs]
    absmax = xf.abs().amax(dim=1)  # [nb]: c_b
    scaled = (xf * (1.0 / absmax.clamp(min=1e-38)).unsqueeze(1)).clamp_(-1.0, 1.0)  # [nb, bs]: X / c_b
    codes = torch.bucketize(scaled.view(-1)[:n], bounds, out_int32=True)  # [n]: nearest code index
    return codes, absmax


def quantize_blockwise(x: torch.Tensor, code_name: str, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise `x` (flattened) block by block to the code book `code_name` ("nf4" or "dynamic").

    Returns:
        codes: uint8 [n], one code index per value (not packed).
        absmax: float32 [ceil(n / blocksize)], the quantisation constant of each block.
    """
    flat = x.reshape(-1)  # [n]
    n = flat.numel()
    _, bounds = code_and_bounds(code_name, flat.device)
    codes = torch.empty(n, dtype=torch.uint8, device=flat.device)
    absmax = torch.empty(n_blocks(n, blocksize), dtype=torch.float32, device=flat.device)
    for start in range(0, n, CHUNK):
        c, a = _quantize_chunk(flat[start:start + CHUNK], bounds, blocksize)
        codes[start:start + c.numel()] = c
        absmax[start // blocksize:start // blocksize + a.numel()] = a
    return codes, absmax


def dequantize_blockwise(codes: torch.Tensor, absmax: torch.Tensor, code_name: str, blocksize: int,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of `quantize_blockwise`: `code[codes] * absmax`, computed in float32, returned as `dtype`.

    Shapes: codes [n] (uint8), absmax [ceil(n / blocksize)] -> [n]
    """
    code, _ = code_and_bounds(code_name, codes.device)
    n = codes.numel()
    values = code[codes.long()]  # [n] float32
    nb = n_blocks(n, blocksize)
    if nb * blocksize != n:
        values = torch.nn.functional.pad(values, (0, nb * blocksize - n))
    return (values.view(nb, blocksize) * absmax.unsqueeze(1)).view(-1)[:n].to(dtype)  # [n]


def quantize_nf4_packed(x: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """NF4-quantise `x` (flattened) and pack two codes per byte, high nibble first (bitsandbytes' layout).

    Returns:
        packed: uint8 [ceil(n / 2)]; byte i holds value 2i in its high 4 bits and value 2i+1 in its low 4
            bits (the code of 0.0 when n is odd and 2i+1 = n).
        absmax: float32 [ceil(n / blocksize)].
    """
    if blocksize % 2 or CHUNK % blocksize:
        raise ValueError(f"blocksize must be even and divide {CHUNK}, got {blocksize}")
    flat = x.reshape(-1)  # [n]
    n = flat.numel()
    _, bounds = code_and_bounds("nf4", flat.device)
    packed = torch.empty((n + 1) // 2, dtype=torch.uint8, device=flat.device)
    absmax = torch.empty(n_blocks(n, blocksize), dtype=torch.float32, device=flat.device)
    for start in range(0, n, CHUNK):
        c, a = _quantize_chunk(flat[start:start + CHUNK], bounds, blocksize)
        c = c.to(torch.uint8)
        if c.numel() % 2:  # the odd last value's partner is the code of 0.0 (bitsandbytes pads with 0.0)
            c = torch.nn.functional.pad(c, (0, 1), value=NF4_ZERO_INDEX)
        packed[start // 2:start // 2 + c.numel() // 2] = c[0::2] << 4 | c[1::2]  # [m / 2]: high nibble first
        absmax[start // blocksize:start // blocksize + a.numel()] = a
    return packed, absmax


def _pair_table(device: torch.device) -> torch.Tensor:
    """[256, 2] float32: the two NF4 values a byte encodes (high nibble, low nibble)."""
    code, _ = code_and_bounds("nf4", device)
    byte = torch.arange(256, device=device)
    return torch.stack([code[byte >> 4], code[byte & 15]], dim=1)  # [256, 2]


_PAIRS: dict[torch.device, torch.Tensor] = {}


def dequantize_nf4_packed(packed: torch.Tensor, absmax: torch.Tensor, n: int, blocksize: int = 64,
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inverse of `quantize_nf4_packed`: `code[q] * absmax` in float32, rounded once to `dtype`, a chunk at
    a time straight into the output (one table lookup per byte, one fused multiply-and-cast per value; no
    float32 copy of the whole tensor when `dtype` is 16-bit).

    Shapes: packed [ceil(n / 2)] (uint8), absmax [ceil(n / blocksize)] -> [n]
    """
    device = packed.device
    if device not in _PAIRS:
        _PAIRS[device] = _pair_table(device)
    pairs = _PAIRS[device]
    out = torch.empty(n, dtype=dtype, device=device)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        values = torch.index_select(pairs, 0, packed[start // 2:(stop + 1) // 2].int()).view(-1)  # [m(+1)] f32
        nb, rest = divmod(stop - start, blocksize)
        scale = absmax[start // blocksize:]  # [>= nb]
        full = nb * blocksize
        if nb:  # Eq. 2, Dettmers et al. 2023: code[q] * c, float32 product written as `dtype`
            torch.mul(values[:full].view(nb, blocksize), scale[:nb, None],
                      out=out[start:start + full].view(nb, blocksize))  # [nb, bs]
        if rest:  # the short last block
            torch.mul(values[full:full + rest], scale[nb], out=out[start + full:stop])
    return out
