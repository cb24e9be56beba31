"""Re-export: `KVCache` and `make_cache` live in `model.py`, the decoder in one file."""
from .model import KVCache, make_cache

__all__ = ["KVCache", "make_cache"]
