"""`LlamaConfig`: the frozen hyper-parameters of a Llama-2, Llama-3 or Mistral decoder, read from a HF config.json.

The three are one decoder with a few differences, each a field here:

| field | Llama-2 | Llama-3.x | Mistral 7B |
| --- | --- | --- | --- |
| `rope_theta` | 10000 | 500000 | 10000 (v0.1), 1e6 (v0.2, v0.3) |
| `rope_scaling` | None | `RopeScaling` ("llama3", Llama-3.1 and 3.2) | None |
| `tie_word_embeddings` | False | True for 3.2 1B / 3B | False |
| `eos_token_ids` | (2,) | several (e.g. `<|end_of_text|>`, `<|eot_id|>`) | (2,) |
| `sliding_window` | None | None | 4096 (v0.1), None (v0.2, v0.3) |
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import MiniLlamaError, read_json

# model_type -> the architectures whose weights and maths are exactly the decoder implemented here.
_ARCHITECTURES = {"llama": {"LlamaForCausalLM", "LlamaModel"}, "mistral": {"MistralForCausalLM", "MistralModel"}}
_ROPE_TYPES = ("default", "llama3")


@dataclass(frozen=True)
class RopeScaling:
    """Llama-3.1's frequency-dependent RoPE scaling (`rope_scaling: {"rope_type": "llama3", ...}` in config.json).

    Meta's `apply_scaling` (llama-models, Llama 3.1): wavelengths shorter than
    `original_max_position_embeddings / high_freq_factor` keep their frequency, those longer than
    `original_max_position_embeddings / low_freq_factor` are divided by `factor`, and the ones between
    are interpolated smoothly (see `rope_scaling.llama3_inv_freq`).

    Attributes:
        factor: How much the low frequencies are slowed (8 for Llama-3.1, 32 for Llama-3.2 1B/3B).
        low_freq_factor: 1 in every released Llama-3.x config.
        high_freq_factor: 4 in every released Llama-3.x config.
        original_max_position_embeddings: The pre-training context (8192).
        rope_type: Always "llama3" (the only scaling implemented).
    """

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int
    rope_type: str = "llama3"


@dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters of a Llama-2, Llama-3 or Mistral decoder; names and defaults follow Hugging Face's
    `LlamaConfig` (and `MistralConfig` for `sliding_window`).

    Defaults are Llama-2-7B's (Touvron et al. 2023, Table 1 / the released config.json).

    Attributes:
        vocab_size: Number of token ids (32000 for Llama-2).
        hidden_size: Model width d.
        intermediate_size: Width of the SwiGLU MLP.
        num_hidden_layers: Number of decoder blocks.
        num_attention_heads: Query heads.
        num_key_value_heads: Key/value heads; < num_attention_heads means grouped-query attention
            (GQA, Ainslie et al. 2023, as in Llama-2-70B). None: num_attention_heads.
        head_dim: Width of one head. None: hidden_size // num_attention_heads.
        max_position_embeddings: Context length the model was trained for (4096 for Llama-2).
        rms_norm_eps: Epsilon of RMSNorm.
        rope_theta: Base of the rotary frequencies.
        tie_word_embeddings: Whether lm_head shares the embedding matrix (Llama-3.2 1B and 3B).
        bos_token_id: Beginning-of-sequence id.
        eos_token_id: End-of-sequence id (the first one when config.json lists several).
        pad_token_id: Padding id (Llama-2 has none: None).
        torch_dtype: The dtype the checkpoint was saved in ("float32", "bfloat16", "float16") or None.
        rope_scaling: Llama-3.1's RoPE scaling (a `RopeScaling`, or its config.json dict), or None.
        sliding_window: Mistral's attention window W: each position attends to itself and the W - 1
            positions before it (Mistral 7B v0.1: 4096). None: full causal attention.
        model_type: "llama" or "mistral" (the same decoder; it only decides what config.json says).
        eos_token_ids: Every end-of-sequence id config.json lists (Llama-3.1 Instruct: 128001, 128008,
            128009), `eos_token_id` first. None: just `eos_token_id`.
    """

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int | None = None
    torch_dtype: str | None = None
    rope_scaling: RopeScaling | None = None
    sliding_window: int | None = None
    model_type: str = "llama"
    eos_token_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # Derived defaults (the dataclass is frozen, hence object.__setattr__): MHA, d / H wide heads, one EOS id.
        # The values a file gives are checked where it is read (`check_values`).
        if self.num_key_value_heads is None:
            object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if isinstance(self.rope_scaling, dict):  # its config.json dict, or from `replace` (asdict makes it a dict)
            object.__setattr__(self, "rope_scaling", _rope_scaling(self.rope_scaling))
        if self.eos_token_ids is None:
            object.__setattr__(self, "eos_token_ids", () if self.eos_token_id is None else (self.eos_token_id,))
        object.__setattr__(self, "eos_token_ids", tuple(self.eos_token_ids))

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> "LlamaConfig":
        """Build a config from a Hugging Face `config.json` dict, refusing what it cannot honour.

        Args:
            d: The parsed config.json.
            source: The file name used in error messages.

        Raises:
            MiniLlamaError: Another architecture, an unsupported rope scaling, biases, another activation,
                per-layer attention types: one line naming the field.
        """
        if not isinstance(d, dict):
            raise MiniLlamaError(f"{source}: expected a JSON object, got {type(d).__name__}")
        archs = d.get("architectures") or []
        model_type = d.get("model_type")
        if model_type not in _ARCHITECTURES or (archs and not set(archs) & _ARCHITECTURES[model_type]):
            raise MiniLlamaError(f"{source}: model_type={model_type!r} architectures={archs} is not a Llama "
                                 "decoder (minillama supports LlamaForCausalLM and MistralForCausalLM)")
        rope = d.get("rope_scaling") or d.get("rope_parameters") or {}
        if not isinstance(rope, dict):
            raise MiniLlamaError(f"{source}: rope_scaling must be an object or null, got {rope!r}")
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in _ROPE_TYPES + (None,):
            raise MiniLlamaError(f"{source}: rope scaling {rope_type!r} is not supported (only the plain rotary "
                                 "embedding and Llama-3's 'llama3')")
        for where, key in ((rope, "rope partial_rotary_factor"), (d, "partial_rotary_factor")):  # in rope or at the top
            if where.get("partial_rotary_factor", 1.0) != 1.0:
                raise MiniLlamaError(f"{source}: {key}={where['partial_rotary_factor']!r} is not supported (minillama "
                                     "rotates the whole head; 1.0 or no key)")
        if d.get("attention_bias") or d.get("mlp_bias"):
            raise MiniLlamaError(f"{source}: attention_bias/mlp_bias are set; Llama-2 has no biases")
        if d.get("hidden_act", "silu") != "silu":
            raise MiniLlamaError(f"{source}: hidden_act={d['hidden_act']!r} is not supported (Llama-2 uses silu)")
        if isinstance(d.get("layer_types"), list) and set(d["layer_types"]) != {"full_attention"} and not (
                model_type == "mistral" and set(d["layer_types"]) == {"sliding_attention"}):
            raise MiniLlamaError(f"{source}: layer_types={sorted(set(d['layer_types']))} (attention that differs "
                                 "per layer) is not supported")
        missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                               "num_attention_heads") if k not in d]
        if missing:
            raise MiniLlamaError(f"{source}: required field {missing[0]!r} is missing")
        try:
            kwargs = dict(
                vocab_size=_integer(d, "vocab_size"), hidden_size=_integer(d, "hidden_size"),
                intermediate_size=_integer(d, "intermediate_size"),
                num_hidden_layers=_integer(d, "num_hidden_layers"),
                num_attention_heads=_integer(d, "num_attention_heads"),
                num_key_value_heads=_integer(d, "num_key_value_heads", None),
                head_dim=_integer(d, "head_dim", None),
                max_position_embeddings=_integer(d, "max_position_embeddings", 4096),
                rms_norm_eps=_number(d, "rms_norm_eps", 1e-6),
                rope_theta=_number(d if "rope_theta" in d else rope, "rope_theta", 10000.0),
                tie_word_embeddings=d.get("tie_word_embeddings", False),
                bos_token_id=_first_id(d, "bos_token_id", 1),
                eos_token_id=_first_id(d, "eos_token_id", 2),
                pad_token_id=_first_id(d, "pad_token_id", None),
                torch_dtype=d.get("torch_dtype") or d.get("dtype"),
                rope_scaling=_rope_scaling(rope) if rope_type == "llama3" else None,
                # MistralConfig's default window is 4096 when config.json has no sliding_window key
                sliding_window=_integer({"sliding_window": d.get("sliding_window", 4096)}, "sliding_window", None)
                if model_type == "mistral" else None,
                model_type=model_type,
                eos_token_ids=_all_ids(d, "eos_token_id", 2),
            )
            check_values(kwargs)
        except MiniLlamaError as exc:
            raise MiniLlamaError(f"{source}: {exc}") from None
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path) -> "LlamaConfig":
        """Read and check a `config.json` file."""
        return cls.from_hf_dict(read_json(Path(path)), source=str(path))

    def to_hf_dict(self) -> dict[str, Any]:
        """A `config.json` dict that transformers 4.x and 5.x load as `LlamaForCausalLM` (or
        `MistralForCausalLM`); a Llama-2 config gives exactly the keys it always gave."""
        d = {k: v for k, v in asdict(self).items() if k not in ("torch_dtype", "eos_token_ids", "sliding_window")}
        d.update(
            architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
            attention_bias=False, mlp_bias=False, attention_dropout=0.0,
            initializer_range=0.02, pretraining_tp=1, use_cache=True,
        )
        if len(self.eos_token_ids) > 1:
            d["eos_token_id"] = list(self.eos_token_ids)
        if self.model_type == "mistral":  # MistralConfig has no bias or pretraining_tp fields
            for key in ("attention_bias", "mlp_bias", "pretraining_tp"):
                del d[key]
            d.update(architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=self.sliding_window)
        if self.torch_dtype is not None:
            d["torch_dtype"] = self.torch_dtype
        return dict(sorted(d.items()))

    def replace(self, **changes: Any) -> "LlamaConfig":
        """A copy with some fields changed (the config is frozen)."""
        if "eos_token_id" in changes and "eos_token_ids" not in changes:
            changes["eos_token_ids"] = None  # a new EOS id replaces the list (it is derived again)
        return LlamaConfig(**{**asdict(self), **changes})


_SIZES = ("hidden_size", "num_attention_heads", "vocab_size", "intermediate_size", "num_hidden_layers",
          "num_key_value_heads", "head_dim", "max_position_embeddings", "sliding_window")


def check_values(v: dict[str, Any]) -> None:
    """One check per value a model file gives (config.json, GGUF metadata; `LlamaConfig` fields, already read
    as integers and numbers): raise MiniLlamaError with the first problem, one line naming the field."""
    def require(ok: bool, problem: str) -> None:
        if not ok:
            raise MiniLlamaError(problem)

    for key in _SIZES:
        require(v.get(key) is None or v[key] >= 1, f"{key} must be a positive integer, got {v.get(key)!r}")
    heads, vocab = v["num_attention_heads"], v["vocab_size"]
    require(v.get("head_dim") is not None or v["hidden_size"] % heads == 0,
            f"num_attention_heads={heads} does not divide hidden_size={v['hidden_size']} (and no head_dim is given)")
    kv_heads, head_dim = v.get("num_key_value_heads") or heads, v.get("head_dim") or v["hidden_size"] // heads
    require(heads % kv_heads == 0, f"num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}")
    require(head_dim % 2 == 0, f"head_dim={head_dim} must be even for rotary embeddings")
    for key in ("rms_norm_eps", "rope_theta"):
        require(math.isfinite(v[key]) and v[key] > 0, f"{key} must be a finite number > 0, got {v[key]!r}")
    require(isinstance(v["tie_word_embeddings"], bool),
            f"tie_word_embeddings must be true or false, got {v['tie_word_embeddings']!r}")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        require(v.get(key) is None or 0 <= v[key] < vocab,
                f"{key} must be a token id in [0, vocab_size={vocab}), got {v.get(key)!r}")
    require(all(0 <= i < vocab for i in v.get("eos_token_ids") or ()),
            f"eos_token_ids must be a tuple of token ids in [0, vocab_size={vocab}), got {v.get('eos_token_ids')!r}")


def _integer(d: dict[str, Any], key: str, default: Any = ...) -> Any:
    """An integer field of config.json (4 or 4.0; not 4.5, "4", true); null or absent gives `default`."""
    value = d.get(key)
    if value is None:
        if default is ...:
            raise MiniLlamaError(f"required field {key!r} is missing")
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MiniLlamaError(f"{key} must be an integer, got {value!r}")
    return value


def _number(d: dict[str, Any], key: str, default: float) -> float:
    value = d.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MiniLlamaError(f"{key} must be a number, got {value!r}")
    return float(value)


def _rope_scaling(rope: dict[str, Any]) -> RopeScaling:
    """`RopeScaling` from config.json's `rope_scaling` (transformers 4.x) or `rope_parameters` (5.x) object."""
    names = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    for key in names:
        if rope.get(key) is None:
            raise MiniLlamaError(f"rope_scaling.{key} is missing (rope_type 'llama3' needs {', '.join(names)})")
    for key in names[:3]:
        value = rope[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise MiniLlamaError(f"rope_scaling.{key} must be a finite number > 0, got {rope[key]!r}")
    if not rope["low_freq_factor"] < rope["high_freq_factor"]:
        raise MiniLlamaError(f"rope_scaling.low_freq_factor={rope['low_freq_factor']} must be below "
                             f"high_freq_factor={rope['high_freq_factor']}")
    key = "rope_scaling.original_max_position_embeddings"
    size = _integer({key: rope["original_max_position_embeddings"]}, key)
    if size < 1:
        raise MiniLlamaError(f"{key} must be a positive integer, got {size!r}")
    return RopeScaling(factor=rope["factor"], low_freq_factor=rope["low_freq_factor"],
                       high_freq_factor=rope["high_freq_factor"], original_max_position_embeddings=size,
                       rope_type=rope.get("rope_type", rope.get("type", "llama3")))


def _all_ids(d: dict[str, Any], key: str, default: int) -> tuple[int, ...]:
    """Every id of a field that may hold one id or a list (Llama-3.1 Instruct lists three EOS ids)."""
    value = d.get(key, default)
    values = value if isinstance(value, (list, tuple)) else [value]
    return tuple(_integer({key: v}, key) for v in values if v is not None)


def _first_id(d: dict[str, Any], key: str, default: int | None) -> int | None:
    """HF allows a list of ids for bos/eos; the first one is the canonical id."""
    value = d.get(key, default)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return _integer({key: value}, key, None) if value is not None else None
