"""Re-export: the SwiGLU MLP `LlamaMLP` (Shazeer 2020) lives in `model.py`, the decoder in one file."""
from .model import LlamaMLP

__all__ = ["LlamaMLP"]
