"""minillama: a small, readable Llama decoder (Llama-2, Llama-3.x, Mistral 7B) that loads Hugging Face
checkpoints and generates.

Public API::

    from minillama import Llama, LlamaConfig, Tokenizer, BPETokenizer, load_tokenizer, MiniLlamaError
    model = Llama.from_pretrained("meta-llama/Llama-2-7b-chat-hf", dtype="bfloat16", device="cuda")
    tok = load_tokenizer("meta-llama/Llama-2-7b-chat-hf")   # tokenizer.model; Llama-3: tokenizer.json

The names are imported lazily (PEP 562): `import minillama.config` or `minillama.hub` does not import torch.
"""
from importlib import import_module

_EXPORTS = {
    "BPETokenizer": ".bpe_tokenizer",
    "LlamaConfig": ".config",
    "RopeScaling": ".config",
    "MiniLlamaError": ".errors",
    "finish_reasons": ".generate",
    "left_pad": ".generate",
    "Llama": ".model",
    "Tokenizer": ".tokenizer",
    "load_tokenizer": ".tokenizer",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value  # cache: later look-ups skip this function
        return value
    raise AttributeError(f"module 'minillama' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
