"""Re-export: `LlamaAttention` and `repeat_kv` (GQA) live in `model.py`, the decoder in one file."""
from .model import KVCache, LlamaAttention, apply_rotary, repeat_kv

__all__ = ["KVCache", "LlamaAttention", "apply_rotary", "repeat_kv"]
