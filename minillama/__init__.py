"""minillama: a small, readable Llama-2 decoder that loads Hugging Face checkpoints and generates.

Public API::

    from minillama import Llama, LlamaConfig, Tokenizer, load_tokenizer, MiniLlamaError
    model = Llama.from_pretrained("meta-llama/Llama-2-7b-chat-hf", dtype="bfloat16", device="cuda")
    tok = load_tokenizer("meta-llama/Llama-2-7b-chat-hf")
"""
from .config import LlamaConfig
from .errors import MiniLlamaError
from .generate import finish_reasons, left_pad
from .model import Llama
from .tokenizer import Tokenizer, load_tokenizer

__all__ = ["Llama", "LlamaConfig", "Tokenizer", "load_tokenizer", "MiniLlamaError", "left_pad", "finish_reasons"]
