"""`merge_lora`: fold every LoRA update into its base weight, optionally back to plain `nn.Linear`s."""
from __future__ import annotations

import torch.nn as nn

from lora.errors import LoraError
from lora.inject import lora_layers


def merge_lora(model: nn.Module, unload: bool = True, progress: bool = False) -> nn.Module:
    """Merge `W0 <- W0 + (alpha / r) B A` in every `LoRALinear` of `model` (paper Eq. 2, W = W0 + BA).

    The model computes the same function afterwards, with no extra inference cost.

    Args:
        model: a model with LoRA layers (modified in place).
        unload: replace each `LoRALinear` by a plain `nn.Linear` holding the merged weight, so that
            `state_dict()` / `save_pretrained` produce exactly the base model's keys (for export).
            With `unload=False` the layers stay `LoRALinear`s in the merged state (`unmerge()` works).
        progress: show a progress bar over the layers.

    Returns:
        The same `model`.
    """
    layers = lora_layers(model)
    if not layers:
        raise LoraError("model has no LoRA layers to merge")
    if progress:
        from tqdm import tqdm
        layers = tqdm(layers, desc="merge LoRA", unit="layer")
    for name, layer in layers:
        if unload:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, layer.to_linear())  # to_linear() merges first
        else:
            layer.merge()
    return model
