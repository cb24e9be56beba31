"""`LoraConfig`: the LoRA hyper-parameters and their PEFT `adapter_config.json` form (checked when read from a file)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from lora.errors import LoraError

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")

# adapter_config.json fields whose non-default values change what PEFT computes and that this package
# does not implement. Loading an adapter that sets one of them is refused rather than silently wrong.
_UNSUPPORTED_IF_SET = {
    "bias": "none", "fan_in_fan_out": False, "lora_bias": False,
    "modules_to_save": None, "layers_to_transform": None, "layers_pattern": None,
    "rank_pattern": {}, "alpha_pattern": {}, "layer_replication": None, "exclude_modules": None,
    "target_parameters": None, "trainable_token_indices": None, "use_qalora": False,
    "alora_invocation_tokens": None,
}


def name_matches(pattern: str, module_name: str, regex: bool = False) -> bool:
    """PEFT's target rule: a regex must match the whole name; a plain name must be a dotted suffix."""
    if regex:
        return re.fullmatch(pattern, module_name) is not None
    return module_name == pattern or module_name.endswith("." + pattern)


@dataclass(frozen=True)
class LoraConfig:
    """Hyper-parameters of LoRA (Hu et al. 2021, arXiv:2106.09685).

    Args:
        r: rank of the update `B @ A` (`r << min(d, k)`, Eq. 2 of the reproduced paper, Sec. 3.2).
        alpha: the update is scaled by `alpha / r` (Sec. 4.1, Hu et al. 2021), so that changing `r`
            does not require re-tuning the learning rate.
        dropout: dropout probability applied to the input of the LoRA path only (0 disables it).
        target_modules: names of the `nn.Linear` modules to adapt, matched as a suffix of the dotted
            module name (`"q_proj"` matches `model.layers.3.self_attn.q_proj`), exactly as PEFT does
            for a list. A single string is a regular expression that must match the full module
            name (PEFT's rule for a string).
        use_rslora: scale by `alpha / sqrt(r)` instead (rank-stabilised LoRA, Kalajdzievski 2023),
            as PEFT's `use_rslora=True`.
        use_dora: decompose the adapted weight into a magnitude and a direction, `m (W0 + s B A) /
            ||W0 + s B A||_c` (DoRA, Liu et al. 2024, `lora.dora.DoRALinear`), as PEFT's `use_dora=True`.
    """

    r: int = 8
    alpha: float = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] | str = DEFAULT_TARGETS
    use_rslora: bool = False
    use_dora: bool = False

    def __post_init__(self) -> None:
        targets = self.target_modules
        if not isinstance(targets, str):  # a regex stays a string; a list of names becomes a tuple, deduplicated
            ordered = sorted(targets) if isinstance(targets, (set, frozenset)) else targets
            object.__setattr__(self, "target_modules", tuple(dict.fromkeys(ordered)))

    @property
    def scaling(self) -> float:
        """The factor on `B @ A`: `alpha / r` (Hu et al. 2021), or `alpha / sqrt(r)` with rsLoRA."""
        return self.alpha / math.sqrt(self.r) if self.use_rslora else self.alpha / self.r

    def matches(self, module_name: str) -> bool:
        """Whether the module called `module_name` (dotted, as in `named_modules()`) is a target."""
        if isinstance(self.target_modules, str):
            return name_matches(self.target_modules, module_name, regex=True)
        return any(name_matches(t, module_name) for t in self.target_modules)

    def to_peft_dict(self, base_model_name_or_path: str | None = None) -> dict[str, Any]:
        """The `adapter_config.json` content PEFT writes for this config (fields older PEFT knows too)."""
        alpha = int(self.alpha) if float(self.alpha).is_integer() else self.alpha
        targets = self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules)
        return {
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "auto_mapping": None,
            "base_model_name_or_path": base_model_name_or_path, "revision": None,
            "r": self.r, "lora_alpha": alpha, "lora_dropout": float(self.dropout),
            "target_modules": targets, "bias": "none", "fan_in_fan_out": False,
            "inference_mode": True, "init_lora_weights": True, "modules_to_save": None,
            "layers_to_transform": None, "layers_pattern": None, "rank_pattern": {},
            "alpha_pattern": {}, "use_rslora": self.use_rslora, "use_dora": self.use_dora,
        }

    @classmethod
    def from_peft_dict(cls, d: Any) -> "LoraConfig":
        """Parse and check an `adapter_config.json` dict (where these values enter from a file); raise
        `LoraError` (without the file name) if it is unusable."""
        if not isinstance(d, dict):
            raise LoraError(f"expected a JSON object, got {type(d).__name__}")
        if d.get("peft_type", "LORA") != "LORA":
            raise LoraError(f"peft_type is {d.get('peft_type')!r}, only 'LORA' adapters are supported")
        missing = [k for k in ("r", "lora_alpha", "target_modules") if k not in d]
        if missing:
            raise LoraError(f"missing field(s) {', '.join(missing)}")
        for key, default in _UNSUPPORTED_IF_SET.items():
            value = d.get(key, default)
            if value != default and not (default is None and value in ([], {})):
                raise LoraError(f"{key}={value!r} is not supported by this LoRA implementation "
                                f"(only {key}={default!r})")
        r, alpha, dropout, targets = d["r"], d["lora_alpha"], d.get("lora_dropout") or 0.0, d["target_modules"]
        def number(v, kind=(int, float)) -> bool:  # JSON's true / false are no numbers
            return isinstance(v, kind) and not isinstance(v, bool)
        if not (number(r, int) and r >= 1):
            raise LoraError(f"r must be a positive integer, got {r!r}")
        if not (number(alpha) and math.isfinite(alpha) and alpha > 0):
            raise LoraError(f"lora_alpha must be a positive number, got {alpha!r}")
        if not (number(dropout) and 0 <= dropout < 1):
            raise LoraError(f"lora_dropout must be a number in [0, 1), got {dropout!r}")
        for key in ("use_rslora", "use_dora"):
            if not isinstance(d.get(key, False), bool):
                raise LoraError(f"{key} must be true or false, got {d[key]!r}")
        if isinstance(targets, str):
            try:
                re.compile(targets)
            except re.error as e:
                raise LoraError(f"target_modules regex {targets!r} is invalid: {e}") from None
        elif not (isinstance(targets, list) and targets and all(isinstance(t, str) and t.strip() for t in targets)):
            raise LoraError("target_modules must be a non-empty list of module names (e.g. ['q_proj', 'v_proj']) "
                            f"or a regex string, got {targets!r}")
        return cls(r=r, alpha=alpha, dropout=dropout, target_modules=targets if isinstance(targets, str) else
                   tuple(targets), use_rslora=d.get("use_rslora", False), use_dora=d.get("use_dora", False))
