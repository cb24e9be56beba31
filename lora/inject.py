"""Put `LoRALinear` layers into a model by module name, freeze the rest, and count what trains."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from minillama.nf4.linear import NF4Linear

from lora.config import LoraConfig, name_matches
from lora.errors import LoraError
from lora.dora import DoRALinear
from lora.layer import LoRALinear

LINEARS = (nn.Linear, NF4Linear)  # what LoRA can wrap: a float or a 4-bit (QLoRA) frozen linear layer


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """All `(module_name, LoRALinear)` pairs of `model`, in `named_modules()` order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]


def find_targets(model: nn.Module, config: LoraConfig) -> list[str]:
    """Names of the `nn.Linear` / `NF4Linear` (or already `LoRALinear`) modules `config.target_modules` selects;
    changes nothing.

    Raises:
        LoraError: a target name matches no module, or matches a module that is not an `nn.Linear`.
    """
    modules = dict(model.named_modules())
    model_name = type(model).__name__
    linear_names = sorted({n.rsplit(".", 1)[-1] for n, m in modules.items() if isinstance(m, LINEARS)})
    regex = isinstance(config.target_modules, str)
    patterns = [config.target_modules] if regex else config.target_modules
    selected: set[str] = set()
    for pattern in patterns:
        hits = [n for n in modules if n and name_matches(pattern, n, regex=regex)]
        if not hits:
            raise LoraError(f"target module {pattern!r} matches no module of {model_name} "
                            f"(its nn.Linear names are: {', '.join(linear_names)})")
        wrong = [n for n in hits if not isinstance(modules[n], (*LINEARS, LoRALinear))]
        if wrong:
            raise LoraError(f"target module {pattern!r} matches {wrong[0]!r}, a "
                            f"{type(modules[wrong[0]]).__name__}, not an nn.Linear")
        selected.update(hits)
    return [n for n in modules if n in selected]  # model order


def apply_lora(model: nn.Module, config: LoraConfig | None = None) -> nn.Module:
    """Wrap every targeted `nn.Linear` (or 4-bit `NF4Linear`) of `model` in a `LoRALinear`, in place, and
    freeze all else.

    Works on any model whose module names follow Hugging Face Llama (`minillama.Llama` and
    `transformers.LlamaForCausalLM` alike): `q_proj` ... `o_proj` of every layer by default, the MLP's
    `gate_proj` / `up_proj` / `down_proj` when listed in `config.target_modules`.

    Args:
        model: the model to adapt (modified in place).
        config: the LoRA hyper-parameters; `LoraConfig()` if None.

    With `config.use_dora` the layers are `DoRALinear`s (Liu et al. 2024), whose magnitude
    `lora_magnitude_vector` trains too.

    Returns:
        The same `model`, whose only trainable parameters are now the `lora_A` / `lora_B` weights (and the
        DoRA magnitudes).

    Raises:
        LoraError: the model already has LoRA layers, or a target matches nothing (nothing is changed).
    """
    config = config or LoraConfig()
    existing = lora_layers(model)
    if existing:
        raise LoraError(f"model already has LoRA layers (e.g. {existing[0][0]}); apply_lora once per model")
    targets = find_targets(model, config)  # validates everything before the first change
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        kind = DoRALinear if config.use_dora else LoRALinear
        layer = kind(base, r=config.r, alpha=config.alpha, dropout=config.dropout, use_rslora=config.use_rslora)
        setattr(parent, child, layer.train(base.training))  # an eval-mode model gets eval-mode dropout
    for pname, p in model.named_parameters():
        p.requires_grad_(".lora_A." in f".{pname}" or ".lora_B." in f".{pname}"
                         or f".{pname}".endswith(".lora_magnitude_vector"))
    return model


@dataclass(frozen=True)
class TrainableSummary:
    """Trainable and total parameter counts (each shared parameter counted once)."""

    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    @property
    def line(self) -> str:
        """PEFT's `print_trainable_parameters` line, e.g. `trainable params: 4,194,304 || ...`."""
        return (f"trainable params: {self.trainable:,} || all params: {self.total:,} || "
                f"trainable%: {self.percent:.4f}")

    def __str__(self) -> str:
        return self.line


def trainable_summary(model: nn.Module) -> TrainableSummary:
    """Count trainable (`requires_grad`) and all parameters of `model`; works on the meta device.

    A 4-bit weight (`NF4Linear`, stored in buffers) counts its out x in values, as PEFT counts bitsandbytes'
    packed `Params4bit`.
    """
    params = list(model.parameters())  # parameters() yields each shared (tied) tensor once
    quantized = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, NF4Linear))
    return TrainableSummary(trainable=sum(p.numel() for p in params if p.requires_grad),
                            total=sum(p.numel() for p in params) + quantized)
