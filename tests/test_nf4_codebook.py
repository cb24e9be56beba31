"""The NF4 code book equals QLoRA's published values and bitsandbytes' tables; the dynamic map equals bnb's."""
from __future__ import annotations

import pytest
import torch

from minillama.nf4.codebook import NF4_ZERO_INDEX, code_and_bounds, dynamic_map, nf4_code

# Dettmers et al. 2023 (QLoRA), Appendix E "NormalFloat 4-bit data type": the exact values of NF4.
PAPER_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
             -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
             0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
             0.7229568362236023, 1.0]


def test_nf4_code_equals_the_papers_values_bit_for_bit():
    code = nf4_code()
    assert code.dtype == torch.float32 and code.shape == (16,)
    assert torch.equal(code, torch.tensor(PAPER_NF4, dtype=torch.float32))
    assert code[NF4_ZERO_INDEX] == 0 and (code.diff() > 0).all()  # sorted, zero exact


def test_nf4_code_equals_bitsandbytes_tables():
    bnbf = pytest.importorskip("bitsandbytes.functional")
    assert torch.equal(nf4_code(), bnbf.get_4bit_type("nf4", device="cpu"))
    normal_map = bnbf.create_normal_map()  # the construction the table comes from (256 slots, 15 non-zero)
    assert torch.equal(nf4_code()[nf4_code() != 0], normal_map[normal_map != 0])


def test_dynamic_map_equals_bitsandbytes():
    bnbf = pytest.importorskip("bitsandbytes.functional")
    assert torch.equal(dynamic_map(), bnbf.create_dynamic_map(signed=True))
    assert dynamic_map().unique().numel() == 256


def test_bounds_pick_the_nearest_code():
    code, bounds = code_and_bounds("nf4", "cpu")
    x = torch.linspace(-1, 1, 10001)
    nearest = (x[:, None] - code[None, :]).abs().argmin(dim=1)
    assert torch.equal(torch.bucketize(x, bounds), nearest)


def test_nf4_code_returns_a_copy():
    nf4_code().zero_()
    assert nf4_code()[0] == -1.0
