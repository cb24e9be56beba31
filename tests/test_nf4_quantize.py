"""NF4 quantisation against bitsandbytes' CPU backend: packed codes byte for byte, dequantised values within
one rounding, with and without double quantisation, on odd sizes and across chunk boundaries."""
from __future__ import annotations

import pytest
import torch

import minillama.nf4.blockwise as blockwise
from minillama.nf4.codebook import dynamic_map, nf4_code
from minillama.nf4.quantize import NF4Weight, nf4_nbytes, quantize_nf4

bnbf = pytest.importorskip("bitsandbytes.functional")
SHAPES = [(64, 64), (96, 130), (333, 77), (7,), (1, 1), (512, 1000)]  # odd sizes; > 256 blocks for the nested level
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
LUT_STEP = 2 / 65535  # bitsandbytes' C++ CPU 8-bit quantiser looks values up on a 65536-point grid of [-1, 1]
FAST = {((333, 77), torch.bfloat16), ((96, 130), torch.float32), ((7,), torch.float16)}  # the rest: slow
SWEEP = [pytest.param(shape, dtype, marks=() if (shape, dtype) in FAST else pytest.mark.slow)
         for shape in SHAPES for dtype in DTYPES]


def _weight(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * 0.02
    w.view(-1)[::97] *= 8  # some outliers, so block constants vary
    return w.to(dtype)


def _one_rounding(ours, ref, dtype):
    torch.testing.assert_close(ours, ref, rtol=torch.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("shape, dtype", SWEEP)
def test_matches_bitsandbytes_without_double_quant(shape, dtype):
    w = _weight(shape, dtype)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=False, quant_type="nf4")
    q = quantize_nf4(w, double_quant=False)
    assert torch.equal(q.packed, packed.view(-1))  # byte for byte, high nibble first
    assert torch.equal(q.absmax, state.absmax)
    _one_rounding(q.dequantize(dtype), bnbf.dequantize_4bit(packed, state, quant_type="nf4"), dtype)
    assert q.nbytes == nf4_nbytes(w.numel(), double_quant=False) == packed.numel() + 4 * state.absmax.numel()


def _bnb_reference_blockwise(x: torch.Tensor, blocksize: int):
    """bitsandbytes' portable torch kernel for 8-bit blockwise quantisation (exact nearest code), which its CPU
    build shadows with a C++ kernel that looks codes up on a grid."""
    import bitsandbytes  # noqa: F401  (registers the op)
    op = torch.ops.bitsandbytes.quantize_blockwise.default
    try:
        keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
        return op.redispatch(keys, x, dynamic_map(), blocksize)
    except (AttributeError, RuntimeError) as e:
        pytest.skip(f"cannot call bitsandbytes' reference kernel on this torch ({e})")


@pytest.mark.parametrize("shape, dtype", SWEEP)
def test_matches_bitsandbytes_with_double_quant(shape, dtype):
    w = _weight(shape, dtype, seed=1)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
    q = quantize_nf4(w, double_quant=True)
    assert torch.equal(q.packed, packed.view(-1))
    assert torch.equal(q.nested_offset, state.offset)            # mean of the block-64 constants
    assert torch.equal(q.nested_absmax, state.state2.absmax)     # block-256 constants of the second level
    # The 8-bit codes equal bitsandbytes' reference (nearest-code) kernel byte for byte ...
    _, flat_absmax = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=False, quant_type="nf4")
    ref_codes, ref_scale = _bnb_reference_blockwise(flat_absmax.absmax - state.offset, 256)
    assert torch.equal(q.absmax, ref_codes)
    torch.testing.assert_close(q.nested_absmax, ref_scale, rtol=0, atol=1e-38)  # it stores 1e-38 for an all-0 block
    # ... and its CPU C++ kernel's except where its 65536-point grid rounds across a midpoint (one step off).
    differ = q.absmax != state.absmax
    if differ.any():  # a block of 256 whose constants are all equal has scale 0: any code decodes the same
        code = dynamic_map()
        lo = torch.minimum(q.absmax, state.absmax)[differ].long()
        one_step = (q.absmax.int() - state.absmax.int())[differ].abs() == 1
        scale = q.nested_absmax.repeat_interleave(256)[:q.absmax.numel()][differ]
        normed = (flat_absmax.absmax - state.offset)[differ] * (1 / scale.clamp(min=1e-38))
        near_midpoint = (normed - (code[lo] + code[lo.clamp(max=254) + 1]) / 2).abs() <= LUT_STEP
        assert ((one_step & near_midpoint) | (scale == 0)).all()
    assert differ.float().mean() < 0.01 or q.absmax.numel() == 1
    # Dequantisation: bitsandbytes' arithmetic on our bytes gives our values.
    state.absmax = q.absmax.clone()
    _one_rounding(q.dequantize(dtype), bnbf.dequantize_4bit(packed, state, quant_type="nf4"), dtype)
    expected_absmax = bnbf.dequantize_blockwise(q.absmax, state.state2) + state.offset
    assert torch.equal(q.block_absmax(), expected_absmax)
    assert q.nbytes == nf4_nbytes(w.numel(), double_quant=True)


@pytest.mark.parametrize("double_quant", [False, True])
def test_chunking_changes_nothing(monkeypatch, double_quant):
    w = _weight((45, 77), torch.bfloat16, seed=2)  # 3465 values: many chunks of 256, the last one partial and odd
    whole = quantize_nf4(w, double_quant=double_quant)
    monkeypatch.setattr(blockwise, "CHUNK", 256)
    chunked = quantize_nf4(w, double_quant=double_quant)
    for name in ("packed", "absmax", "nested_absmax", "nested_offset"):
        a, b = getattr(whole, name), getattr(chunked, name)
        assert (a is None and b is None) or torch.equal(a, b), name
    assert torch.equal(chunked.dequantize(torch.bfloat16), whole.dequantize(torch.bfloat16))


def test_tensor_larger_than_a_chunk_matches_bitsandbytes():
    w = _weight((1100, 1024), torch.bfloat16, seed=3)  # 1.13 M values: crosses the 2^20-value chunk
    packed, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=False, quant_type="nf4")
    q = quantize_nf4(w, double_quant=False)
    assert torch.equal(q.packed, packed.view(-1)) and torch.equal(q.absmax, state.absmax)
    assert torch.equal(q.dequantize(torch.bfloat16), bnbf.dequantize_4bit(packed, state, quant_type="nf4"))


def test_zero_blocks_and_exact_codes_round_trip():
    w = torch.zeros(3, 64)
    w[1] = torch.linspace(-1, 1, 64)
    w[2, :16] = torch.tensor([-1.0, -0.5250730514526367, 0.0, 0.7229568362236023] * 4)  # NF4 values, absmax 1
    q = quantize_nf4(w, double_quant=False)
    out = q.dequantize()
    assert torch.equal(out[0], torch.zeros(64)) and q.absmax[0] == 0
    assert torch.equal(out[2], w[2])
    half_gap = nf4_code().diff().max() / 2  # nearest-code rounding errs by at most half the widest gap
    assert (out[1] - w[1]).abs().max() <= half_gap + 1e-6


def test_rejects_integer_tensors_and_reads_without_modifying():
    with pytest.raises(ValueError, match="floating-point"):
        quantize_nf4(torch.ones(4, dtype=torch.int64))
    w = _weight((8, 64), torch.float32)
    before = w.clone()
    q = quantize_nf4(w)
    assert torch.equal(w, before) and isinstance(q, NF4Weight) and q.shape == (8, 64)


def test_storage_is_about_4_127_bits_per_value_with_double_quant():
    n = 4096 * 4096
    assert nf4_nbytes(n, True) * 8 / n == pytest.approx(4 + 8 / 64 + 32 / (64 * 256), abs=1e-5)  # QLoRA Sec. 3
    assert nf4_nbytes(n, False) * 8 / n == pytest.approx(4 + 32 / 64, abs=1e-5)
