"""Re-export: rotary embeddings (RoPE, Su et al. 2021, rotate-half layout) live in `model.py`, the decoder in
one file; Llama-3.1's frequency scaling in `rope_scaling.py`."""
from .model import FIRST_ROWS, RotaryEmbedding, apply_rotary, rotate_half, table_rows
from .rope_scaling import llama3_inv_freq

__all__ = ["FIRST_ROWS", "RotaryEmbedding", "apply_rotary", "llama3_inv_freq", "rotate_half", "table_rows"]
