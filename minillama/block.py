"""Re-export: the decoder block `LlamaDecoderLayer` lives in `model.py`, the decoder in one file."""
from .config import LlamaConfig
from .model import KVCache, LlamaAttention, LlamaDecoderLayer, LlamaMLP, RMSNorm

__all__ = ["KVCache", "LlamaAttention", "LlamaConfig", "LlamaDecoderLayer", "LlamaMLP", "RMSNorm"]
