"""`LlamaConfig`: the frozen set of hyper-parameters of a Llama-2 decoder, read from a HF config.json."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .errors import MiniLlamaError

# Architectures whose weights and maths are exactly the Llama-2 decoder implemented here.
_ARCHITECTURES = {"LlamaForCausalLM", "LlamaModel"}


@dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters of a Llama-2 decoder; names and defaults follow Hugging Face's `LlamaConfig`.

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
        tie_word_embeddings: Whether lm_head shares the embedding matrix.
        bos_token_id: Beginning-of-sequence id.
        eos_token_id: End-of-sequence id.
        pad_token_id: Padding id (Llama-2 has none: None).
        torch_dtype: The dtype the checkpoint was saved in ("float32", "bfloat16", "float16") or None.
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

    def __post_init__(self) -> None:
        # Derived defaults (the dataclass is frozen, hence object.__setattr__): MHA, d / H wide heads.
        if self.num_key_value_heads is None:
            object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        if self.num_attention_heads % self.num_key_value_heads:
            raise MiniLlamaError(f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                                 f"num_key_value_heads={self.num_key_value_heads}")
        if self.head_dim % 2:
            raise MiniLlamaError(f"head_dim={self.head_dim} must be even for rotary embeddings")

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], source: str = "config.json") -> "LlamaConfig":
        """Build a config from a Hugging Face `config.json` dict, refusing what it cannot honour.

        Args:
            d: The parsed config.json.
            source: The file name used in error messages.

        Raises:
            MiniLlamaError: Another architecture, an unsupported rope scaling, biases, another activation.
        """
        archs = d.get("architectures") or []
        model_type = d.get("model_type")
        if model_type != "llama" or (archs and not set(archs) & _ARCHITECTURES):
            raise MiniLlamaError(f"{source}: model_type={model_type!r} architectures={archs} is not a Llama "
                                 "decoder (minillama supports LlamaForCausalLM only)")
        rope = d.get("rope_scaling") or d.get("rope_parameters") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in ("default", None):
            raise MiniLlamaError(f"{source}: rope scaling {rope_type!r} is not supported (only the plain "
                                 "Llama-2 rotary embedding)")
        if d.get("attention_bias") or d.get("mlp_bias"):
            raise MiniLlamaError(f"{source}: attention_bias/mlp_bias are set; Llama-2 has no biases")
        if d.get("hidden_act", "silu") != "silu":
            raise MiniLlamaError(f"{source}: hidden_act={d['hidden_act']!r} is not supported (Llama-2 uses silu)")
        try:
            heads = int(d["num_attention_heads"])
            hidden = int(d["hidden_size"])
            kwargs = dict(
                vocab_size=int(d["vocab_size"]), hidden_size=hidden,
                intermediate_size=int(d["intermediate_size"]),
                num_hidden_layers=int(d["num_hidden_layers"]), num_attention_heads=heads,
                num_key_value_heads=int(d.get("num_key_value_heads") or heads),
                head_dim=int(d.get("head_dim") or hidden // heads),
                max_position_embeddings=int(d.get("max_position_embeddings", 4096)),
                rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
                rope_theta=float(d.get("rope_theta", rope.get("rope_theta", 10000.0))),
                tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
                bos_token_id=_first_id(d.get("bos_token_id", 1)),
                eos_token_id=_first_id(d.get("eos_token_id", 2)),
                pad_token_id=_first_id(d.get("pad_token_id")),
                torch_dtype=d.get("torch_dtype") or d.get("dtype"),
            )
        except KeyError as exc:
            raise MiniLlamaError(f"{source}: required field {exc.args[0]!r} is missing") from None
        except (TypeError, ValueError) as exc:
            raise MiniLlamaError(f"{source}: malformed field ({exc})") from None
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path) -> "LlamaConfig":
        """Read and validate a `config.json` file."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MiniLlamaError(f"{path}: file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MiniLlamaError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(d, dict):
            raise MiniLlamaError(f"{path}: expected a JSON object")
        return cls.from_hf_dict(d, source=str(path))

    def to_hf_dict(self) -> dict[str, Any]:
        """A `config.json` dict that transformers 4.x and 5.x load as `LlamaForCausalLM`."""
        d = {k: v for k, v in asdict(self).items() if k != "torch_dtype"}
        d.update(
            architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
            attention_bias=False, mlp_bias=False, attention_dropout=0.0, rope_scaling=None,
            initializer_range=0.02, pretraining_tp=1, use_cache=True,
        )
        if self.torch_dtype is not None:
            d["torch_dtype"] = self.torch_dtype
        return dict(sorted(d.items()))

    def replace(self, **changes: Any) -> "LlamaConfig":
        """A copy with some fields changed (the config is frozen)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise MiniLlamaError(f"unknown LlamaConfig field(s): {sorted(unknown)}")
        return LlamaConfig(**{**asdict(self), **changes})


def _first_id(value: Any) -> int | None:
    """HF allows a list of ids for bos/eos; the first one is the canonical id."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None else int(value)
