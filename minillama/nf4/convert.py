"""Swap a model's linear layers to `NF4Linear` and back.

What QLoRA quantises (Dettmers et al. 2023, Sec. 4 and its released code): every linear layer of the
transformer blocks; the embedding, the norms and `lm_head` stay in the compute dtype.
"""
from __future__ import annotations

import ctypes

import torch
import torch.nn as nn

from minillama.nf4.linear import NF4Linear

KEEP = ("lm_head",)  # module names (last component) left unquantised
_TRIM: object = None  # glibc's malloc_trim, False where there is none


def quantizable(name: str, module: nn.Module) -> bool:
    """Whether QLoRA would store this module in NF4: an `nn.Linear` that is not `lm_head`."""
    return type(module) is nn.Linear and name.rsplit(".", 1)[-1] not in KEEP


def quantizable_names(model: nn.Module) -> list[str]:
    """Names of the modules `quantize_model` converts, in model order."""
    return [name for name, m in model.named_modules() if quantizable(name, m)]


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule called `name` (dotted) by `module`."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def release_freed_host_memory() -> None:
    """Return heap pages that no tensor uses any more to the OS (glibc `malloc_trim(0)`; a no-op elsewhere).

    Quantising layer by layer frees a 16-bit weight and a few chunk temporaries per layer in between the
    long-lived 4-bit buffers; glibc keeps such holes resident, which lifts the resident size of a 4-bit
    load 20-30% above what the tensors hold unless they are handed back after each layer.
    """
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


@torch.no_grad()
def quantize_model(model: nn.Module, compute_dtype: torch.dtype | None = None,
                   double_quant: bool = True) -> nn.Module:
    """Replace every quantizable `nn.Linear` of `model` (in place) by an `NF4Linear`, one layer at a time.

    Args:
        model: the model (its float linear weights are freed as they are replaced).
        compute_dtype: dtype of the matmuls; default each layer's weight dtype.
        double_quant: double-quantise the block constants (QLoRA's default).

    Returns:
        The same model.
    """
    for name in quantizable_names(model):
        linear = model.get_submodule(name)
        set_module(model, name, NF4Linear.from_linear(linear, compute_dtype, double_quant).train(linear.training))
        del linear
        release_freed_host_memory()
    return model


@torch.no_grad()
def dequantize_model(model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """Replace every `NF4Linear` of `model` (in place) by an `nn.Linear` holding its dequantised weight.

    Args:
        model: the model.
        dtype: dtype of the dense weights; default each layer's compute dtype.
    """
    for name, m in list(model.named_modules()):
        if isinstance(m, NF4Linear):
            weight = m.dequantize(dtype)  # [out, in]
            linear = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, device="meta")
            linear.weight = nn.Parameter(weight, requires_grad=False)
            if m.bias is not None:
                linear.bias = nn.Parameter(m.bias.detach().to(weight.dtype), requires_grad=False)
            set_module(model, name, linear.train(m.training))
    return model
