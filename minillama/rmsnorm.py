"""Re-export: `RMSNorm` (Zhang & Sennrich 2019) lives in `model.py`, the decoder in one file."""
from .model import RMSNorm

__all__ = ["RMSNorm"]
