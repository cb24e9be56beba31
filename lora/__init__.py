"""LoRA (Hu et al. 2021, arXiv:2106.09685) for Hugging Face-named Llama models, with PEFT-format adapters.

    >>> import lora
    >>> model = lora.apply_lora(model, lora.LoraConfig(r=8, alpha=16, dropout=0.05))
    >>> print(lora.trainable_summary(model))          # trainable params: ... || all params: ...
    >>> lora.save_adapter(model, "run/adapter")        # adapter_config.json + adapter_model.safetensors
    >>> lora.load_adapter(other_model, "run/adapter")  # checked, all-or-nothing
    >>> lora.merge_lora(model)                         # W0 <- W0 + (alpha / r) B A, plain nn.Linear again
    >>> lora.LoraConfig(use_dora=True)                 # DoRA (Liu et al. 2024): m (W0 + s B A) / ||W0 + s B A||
"""
from lora.adapter_io import adapter_state, load_adapter, read_adapter_config, save_adapter
from lora.config import LoraConfig
from lora.dora import DoRALinear
from lora.errors import LoraError
from lora.inject import TrainableSummary, apply_lora, lora_layers, trainable_summary
from lora.layer import LoRALinear
from lora.merge import merge_lora

__all__ = [
    "DoRALinear", "LoraConfig", "LoRALinear", "LoraError", "TrainableSummary", "adapter_state", "apply_lora",
    "load_adapter",
    "lora_layers", "merge_lora", "read_adapter_config", "save_adapter", "trainable_summary",
]
