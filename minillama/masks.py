"""Re-export: the padding and packing masks and position ids live in `model.py`, the decoder in one file;
`check_input_ids`, the check of a prompt where it enters, in `generate.py`."""
from .errors import MiniLlamaError
from .generate import check_input_ids
from .model import block_causal_mask, build_attention_mask, positions_from_mask

__all__ = ["MiniLlamaError", "block_causal_mask", "build_attention_mask", "check_input_ids", "positions_from_mask"]
