"""Save and load LoRA adapters in PEFT's on-disk format, checked so that no bad adapter slips through.

An adapter directory holds `adapter_config.json` (PEFT's `LoraConfig` fields) and
`adapter_model.safetensors` with, for every adapted module `<name>` (e.g. `model.layers.0.self_attn.q_proj`):

    base_model.model.<name>.lora_A.weight   [r, in_features]
    base_model.model.<name>.lora_B.weight   [out_features, r]
    base_model.model.<name>.lora_magnitude_vector   [out_features]   (DoRA only, `"use_dora": true`)

PEFT wraps the model twice (`PeftModelForCausalLM.base_model` -> `LoraModel.model` -> the Llama), hence the
`base_model.model.` prefix; it drops the adapter name (`.default`) when saving. Our `LoRALinear` is built
so that `base_model.model.` + its `state_dict` key *is* the PEFT key: the mapping is a string prefix.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file

from minillama.safetensors_io import save_file
from plumbing.durable import replace_atomic

from lora.config import LoraConfig
from lora.errors import LoraError
from lora.inject import apply_lora, find_targets, lora_layers

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
LEGACY_WEIGHTS_NAME = "adapter_model.bin"  # older PEFT; read with torch.load(weights_only=True)
PEFT_PREFIX = "base_model.model."
MAGNITUDE = "lora_magnitude_vector"  # DoRA's m: PEFT saves `<name>.lora_magnitude_vector` (no `.weight`)


def peft_key(module_name: str, which: str) -> str:
    """The PEFT file key: `("model.layers.0.self_attn.q_proj", "lora_A")` ->
    `"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"`."""
    return f"{PEFT_PREFIX}{module_name}.{which}" + ("" if which == MAGNITUDE else ".weight")


def _weights(layer) -> dict[str, torch.Tensor]:
    """A layer's adapter tensors by PEFT name: lora_A and lora_B, and DoRA's magnitude."""
    tensors = {"lora_A": layer.lora_A.weight, "lora_B": layer.lora_B.weight}
    if hasattr(layer, MAGNITUDE):
        tensors[MAGNITUDE] = getattr(layer, MAGNITUDE)
    return tensors


def config_from_model(model: nn.Module) -> LoraConfig:
    """The `LoraConfig` that reproduces the model's LoRA layers (used for `adapter_config.json`)."""
    layers = lora_layers(model)
    if not layers:
        raise LoraError("model has no LoRA layers; call lora.apply_lora(model, config) first")
    first = layers[0][1]
    kind = (first.r, first.lora_alpha, first.use_rslora, hasattr(first, MAGNITUDE))
    for name, layer in layers:
        if (layer.r, layer.lora_alpha, layer.use_rslora, hasattr(layer, MAGNITUDE)) != kind:
            raise LoraError(f"LoRA layers {layers[0][0]} and {name} differ in r/alpha/DoRA; one adapter holds "
                            "one config")
    dropout = first.lora_dropout.p if isinstance(first.lora_dropout, nn.Dropout) else 0.0
    wrapped = [name for name, _ in layers]
    config = LoraConfig(r=first.r, alpha=first.lora_alpha, dropout=dropout, use_rslora=first.use_rslora,
                        use_dora=kind[3], target_modules=tuple(sorted({n.rsplit(".", 1)[-1] for n in wrapped})))
    if find_targets(model, config) != wrapped:  # only some layers adapted: name them exactly (PEFT regex)
        config = LoraConfig(r=config.r, alpha=config.alpha, dropout=config.dropout, use_rslora=config.use_rslora,
                            use_dora=config.use_dora,
                            target_modules="(" + "|".join(re.escape(n) for n in wrapped) + ")")
    return config


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's LoRA weights (and DoRA magnitudes) under PEFT's file keys, whole and on the CPU.

    A weight sharded by FSDP2 (a DTensor) is gathered first: under FSDP every rank must call this.
    """
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in lora_layers(model):
        for which, weight in _weights(layer).items():
            if weight.is_meta:
                raise LoraError(f"cannot save {name}.{which}: its weight is on the meta device")
            if hasattr(weight, "full_tensor"):  # a DTensor (FSDP2): gather the shards
                weight = weight.full_tensor()
            tensors[peft_key(name, which)] = weight.detach().to("cpu").contiguous()
    return tensors


def save_adapter(model: nn.Module, out_dir: str | os.PathLike, base_model_name_or_path: str | None = None,
                 state: dict[str, torch.Tensor] | None = None, base_fingerprint: dict | None = None) -> Path:
    """Write the model's LoRA weights and config as a PEFT adapter in `out_dir` (created if needed).

    Each file is written to a temporary name, re-opened and checked (non-empty, every expected key
    with its shape and values), and only then renamed over the final name (`plumbing.durable`), so each
    file of an existing adapter in `out_dir` is replaced whole or not at all.

    Args:
        state: `adapter_state(model)` already gathered (under FSDP: by every rank; only one writes).
        base_fingerprint: `lora.base_check.base_fingerprint` of the base, written as `base_fingerprint.json`
            so that applying the adapter to another base is noticed (PEFT ignores the file).

    Returns:
        `out_dir` as a Path.
    """
    config = config_from_model(model)
    if base_model_name_or_path is None:
        base_model_name_or_path = getattr(getattr(model, "config", None), "_name_or_path", None) \
            or getattr(model, "name_or_path", None) or None
    tensors = adapter_state(model) if state is None else state
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LoraError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    peft_dict = config.to_peft_dict(base_model_name_or_path)

    def weights(tmp: Path) -> None:  # written, read back and compared before it replaces anything
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        written = load_file(str(tmp))
        if not written or written.keys() != tensors.keys() or any(
                written[k].shape != t.shape or not torch.equal(written[k], t) for k, t in tensors.items()):
            raise LoraError(f"{out / ADAPTER_WEIGHTS_NAME}: re-read adapter does not hold the {len(tensors)} "
                            "tensors written")

    def config_file(tmp: Path) -> None:
        tmp.write_text(json.dumps(peft_dict, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if LoraConfig.from_peft_dict(json.loads(tmp.read_text(encoding="utf-8"))) != config:
            raise LoraError(f"{out / ADAPTER_CONFIG_NAME}: re-read config differs from the one written")

    replace_atomic(out / ADAPTER_WEIGHTS_NAME, weights)  # each file whole or not at all
    replace_atomic(out / ADAPTER_CONFIG_NAME, config_file)
    if base_fingerprint is not None:
        from lora.base_check import write_fingerprint

        write_fingerprint(out, base_fingerprint)
    return out


def read_adapter_config(adapter_dir: str | os.PathLike) -> LoraConfig:
    """Parse and validate `adapter_dir/adapter_config.json`; errors name the file."""
    directory = Path(adapter_dir)
    if not directory.is_dir():
        raise LoraError(f"{directory}: adapter directory not found")
    path = directory / ADAPTER_CONFIG_NAME
    if not path.is_file():
        raise LoraError(f"{path}: missing (not a PEFT adapter directory)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise LoraError(f"{path}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (UnicodeDecodeError, OSError) as e:
        raise LoraError(f"{path}: unreadable ({e})") from None
    try:
        return LoraConfig.from_peft_dict(raw)
    except LoraError as e:
        raise LoraError(f"{path}: {e}") from None


def read_adapter_tensors(adapter_dir: str | os.PathLike) -> tuple[Path, dict[str, torch.Tensor]]:
    """Load the adapter's tensors (safetensors, or a legacy `adapter_model.bin`); errors name the file."""
    directory = Path(adapter_dir)
    path, legacy = directory / ADAPTER_WEIGHTS_NAME, directory / LEGACY_WEIGHTS_NAME
    try:
        if path.is_file():
            tensors = load_file(str(path))
        elif legacy.is_file():
            path, tensors = legacy, torch.load(legacy, map_location="cpu", weights_only=True)
        else:
            raise LoraError(f"{path}: missing")
    except LoraError:
        raise
    except Exception as e:  # safetensors / unpickler errors have many types; report them in one line
        raise LoraError(f"{path}: not a readable adapter weights file ({str(e).splitlines()[0]})") from None
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise LoraError(f"{path}: expected a mapping of names to tensors")
    if not tensors:
        raise LoraError(f"{path}: holds no tensors (an empty adapter)")
    return path, tensors


def _check_tensors(path: Path, config_path: Path, tensors: dict[str, torch.Tensor],
                   expected: dict[str, tuple[int, ...]], config: LoraConfig, model: nn.Module) -> None:
    """Every key expected, none extra, every shape and rank right, all values finite; else LoraError."""
    module_names = {n for n, _ in model.named_modules()}
    for key in sorted(set(tensors) - set(expected)):
        magnitude = key.endswith("." + MAGNITUDE)   # <module>.lora_magnitude_vector, else <module>.lora_X.weight
        module = key[len(PEFT_PREFIX):].rsplit(".", 1 if magnitude else 2)[0] if key.startswith(PEFT_PREFIX) else ""
        if magnitude and not config.use_dora:
            raise LoraError(f"{path}: tensor {key} is a DoRA magnitude but {config_path.name} does not set "
                            "use_dora: true")
        if module in module_names and key.endswith((".lora_A.weight", ".lora_B.weight", "." + MAGNITUDE)):
            raise LoraError(f"{path}: tensor {key} adapts {module}, which target_modules in "
                            f"{config_path.name} does not select")
        raise LoraError(f"{path}: tensor {key} names no LoRA weight of this {type(model).__name__} "
                        "(an adapter for another model?)")
    for key in sorted(set(expected) & set(tensors)):
        shape, want = tuple(tensors[key].shape), expected[key]
        rank_dim = 0 if key.endswith(".lora_A.weight") else 1
        if len(shape) == 2 == len(want) and shape[rank_dim] != config.r \
                and shape[1 - rank_dim] == want[1 - rank_dim]:
            raise LoraError(f"{path}: {key} has rank {shape[rank_dim]} but {config_path.name} says r={config.r}")
        if shape != want:
            raise LoraError(f"{path}: {key} has shape {list(shape)}, this model needs {list(want)} "
                            "(an adapter for another model size?)")
        if not tensors[key].is_floating_point() or not torch.isfinite(tensors[key]).all():
            raise LoraError(f"{path}: {key} is not a finite floating-point tensor")
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise LoraError(f"{path}: lacks {len(missing)} of the {len(expected)} tensors that "
                        f"{config_path.name} implies, e.g. {missing[0]}")


def load_adapter(model: nn.Module, adapter_dir: str | os.PathLike) -> nn.Module:
    """Load a PEFT LoRA adapter into `model`; all checks pass before anything is changed.

    If the model has no LoRA layers yet, they are created from the adapter's config (`apply_lora`);
    if it has some, they must be exactly the adapter's modules with the same r and alpha.

    Raises:
        LoraError: one line naming the file and the problem; the model is then left untouched.
    """
    config = read_adapter_config(adapter_dir)
    config_path = Path(adapter_dir) / ADAPTER_CONFIG_NAME
    path, tensors = read_adapter_tensors(adapter_dir)
    existing = dict(lora_layers(model))
    try:
        targets = find_targets(model, config)
    except LoraError as e:
        raise LoraError(f"{config_path}: {e}") from None
    if existing:
        layer = next(iter(existing.values()))
        if any(m.merged for m in existing.values()):
            raise LoraError(f"{config_path}: the model's LoRA layers are merged; unmerge() them before loading")
        if (layer.r, layer.scaling, hasattr(layer, MAGNITUDE)) != (config.r, config.scaling, config.use_dora) \
                or set(targets) != set(existing):
            raise LoraError(f"{config_path}: adapter (r={config.r}, alpha={config.alpha}, {len(targets)} modules) "
                            f"does not fit the model's LoRA layers (r={layer.r}, alpha={layer.lora_alpha}, "
                            f"{len(existing)} modules)")
    modules = dict(model.named_modules())
    expected: dict[str, tuple[int, ...]] = {}
    for name in targets:
        expected[peft_key(name, "lora_A")] = (config.r, modules[name].in_features)   # A: [r, in]
        expected[peft_key(name, "lora_B")] = (modules[name].out_features, config.r)  # B: [out, r]
        if config.use_dora:
            expected[peft_key(name, MAGNITUDE)] = (modules[name].out_features,)     # m: [out]
    _check_tensors(path, config_path, tensors, expected, config, model)

    if not existing:
        apply_lora(model, config)
    layers = dict(lora_layers(model))
    with torch.no_grad():
        for name in targets:
            for which, weight in _weights(layers[name]).items():
                weight.copy_(tensors[peft_key(name, which)])
    return model
