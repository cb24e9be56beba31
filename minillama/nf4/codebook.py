"""The two code books of QLoRA's storage format: 4-bit NormalFloat (NF4) and the 8-bit dynamic map.

NF4 (Dettmers et al. 2023, "QLoRA", Sec. 3 "4-bit NormalFloat Quantization" and Appendix E) puts its 16
values at quantiles of N(0, 1), so that each value receives the same share of normally distributed
weights, and makes the type asymmetric (7 negative values, 0, 8 positive values) so that zero is exact:

    q_i = 1/2 (Q_X(i / (2^k + 1)) + Q_X((i + 1) / (2^k + 1)))      # Eq. 4, Dettmers et al. 2023

Eq. 4 cannot be evaluated as written at the ends (Q_X(1) = inf). The released table (Appendix E) comes
from bitsandbytes' `create_normal_map(offset=0.9677083)`: the normal quantiles `Phi^-1(p)` at 9 (positive
side) and 8 (negative side) evenly spaced probabilities from `offset` down to 1/2, the 1/2 ones dropped,
a single 0 added, and everything divided by the largest value. `offset` = the mean of 1 - 1/(2*15) and
1 - 1/(2*16), rounded to 7 digits, is where the outermost quantile is taken instead of Q_X(1). We rebuild
it the same way (float32 probabilities from `torch.linspace`, the quantile `torch.special.ndtri` in float64
rounded to float32, float32 normalisation), which gives the paper's 16 values bit for bit
(tests/test_nf4_codebook.py); probabilities from numpy's float32 linspace would move one value by 2.4e-7.

The double-quantisation constants use bitsandbytes' signed 8-bit *dynamic* map (Dettmers 2016, "8-Bit
Approximations for Parallelism in Deep Learning", Sec. 3: dynamic tree quantisation), which is what
`quantize_blockwise` uses by default; QLoRA Sec. 3 calls it "8-bit Floats".
"""
from __future__ import annotations

from functools import lru_cache

import torch

NF4_ZERO_INDEX = 7  # nf4_code()[7] == 0.0 (7 negative values below it)
NF4_OFFSET = 0.9677083  # Appendix E / bitsandbytes create_normal_map: ((1 - 1/30) + (1 - 1/32)) / 2, 7 digits


def nf4_code() -> torch.Tensor:
    """The 16 NF4 values, sorted ascending, in float32 on the CPU (a fresh copy).

    Index 7 is exactly 0, index 0 is -1 and index 15 is +1. See the module docstring for the construction.
    """
    return _nf4_code().clone()


@lru_cache(maxsize=1)
def _nf4_code() -> torch.Tensor:
    # float32 probabilities from torch.linspace (numpy's float32 linspace rounds one of them differently),
    # the last one (1/2) dropped; Phi^-1 = torch.special.ndtri (the standard normal quantile function).
    positive = torch.special.ndtri(torch.linspace(NF4_OFFSET, 0.5, 9)[:-1].double())  # [8] Phi^-1(p), p > 1/2
    negative = -torch.special.ndtri(torch.linspace(NF4_OFFSET, 0.5, 8)[:-1].double())  # [7]
    values = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).float().sort().values  # [16]
    return values / values.max()  # [16], normalised to [-1, 1] (Sec. 3: "normalize ... into the range [-1, 1]")


def dynamic_map() -> torch.Tensor:
    """The signed 8-bit dynamic map (256 sorted float32 values in [-0.993, 1]), as bitsandbytes'
    `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`.

    Value = sign * 10^(e - 6) * m for e = 0..6 ("exponent": the run of leading zero bits) and a linear
    fraction m whose resolution doubles with e: 2^e midpoints of `linspace(0.1, 1, 2^e + 1)` (Dettmers
    2016, Sec. 3). 127 values per sign, plus 0 and 1.
    """
    return _dynamic_map().clone()


@lru_cache(maxsize=1)
def _dynamic_map() -> torch.Tensor:
    values = [0.0, 1.0]
    for e in range(7):
        bounds = torch.linspace(0.1, 1, 2**e + 1, dtype=torch.float32)
        means = (bounds[:-1] + bounds[1:]) / 2.0                     # [2^e] fractions, float32
        scaled = (10 ** (e - 6) * means).tolist()                    # same float32 rounding as bitsandbytes
        values += scaled + (-(10 ** (e - 6)) * means).tolist()
    return torch.tensor(sorted(values), dtype=torch.float32)        # [256]


_CACHE: dict[tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def code_and_bounds(name: str, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(code, decision bounds) on `device`, cached: the bounds are the float32 midpoints between adjacent
    code values, so `torch.bucketize(x, bounds)` is the index of the nearest code value (a tie goes to the
    lower one, as bitsandbytes' `x > midpoint` tests do).

    Args:
        name: "nf4" (16 values) or "dynamic" (256 values).
    """
    key = (name, torch.device(device))
    if key not in _CACHE:
        code = {"nf4": _nf4_code, "dynamic": _dynamic_map}[name]().to(key[1])
        _CACHE[key] = (code, (code[:-1] + code[1:]) / 2)
    return _CACHE[key]
