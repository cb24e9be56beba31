"""QLoRA's 4-bit NormalFloat storage (Dettmers et al. 2023), written out: code books, blockwise absmax
quantisation with double quantisation, a frozen `NF4Linear`, and model conversion.

    >>> from minillama.nf4 import NF4Linear, quantize_nf4
    >>> q = quantize_nf4(weight)                 # NF4Weight: 4.127 bits per value with double quantisation
    >>> w = q.dequantize(torch.bfloat16)         # code[q] * absmax, rounded once
    >>> layer = NF4Linear.from_linear(linear)    # frozen; dequantises inside forward
"""
from minillama.nf4.codebook import dynamic_map, nf4_code
from minillama.nf4.convert import dequantize_model, quantize_model
from minillama.nf4.linear import NF4Linear
from minillama.nf4.quantize import NF4Weight, quantize_nf4

__all__ = ["NF4Linear", "NF4Weight", "dequantize_model", "dynamic_map", "nf4_code", "quantize_model",
           "quantize_nf4"]
