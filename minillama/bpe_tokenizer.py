"""`BPETokenizer`: Llama-3's tokenizer (a byte-level BPE in `tokenizer.json`) with the interface of the
SentencePiece `Tokenizer`: `encode(text, bos, eos)`, `encode_batch`, `decode(ids, stop_at_eos)`, `bos_id`,
`eos_id` / `eos_ids`, `pad_id`, `vocab_size`, `path` and `encode_chat` (Llama-3's header format).

Which tokens begin and end a text is not in tokenizer.json but beside it: `tokenizer_config.json`
(`bos_token`, `eos_token`, `pad_token`) and `generation_config.json` / `config.json` (`eos_token_id`,
one id or several). Without them Llama-3's names are used (`<|begin_of_text|>`, `<|end_of_text|>`).
"""
from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from .bpe import ByteLevelBPE
from .chat_formats import END_OF_TURN, llama3_chat_ids
from .errors import MiniLlamaError, check_path

# Llama 3 (Meta 2024), llama3/tokenizer.py: the special tokens that begin and end a text.
LLAMA3_BOS, LLAMA3_EOS = "<|begin_of_text|>", "<|end_of_text|>"


class BPETokenizer:
    """A byte-level BPE tokenizer read from `tokenizer.json` (Llama-3.x: 128,256 ids).

    Args:
        path: The `tokenizer.json` file; `tokenizer_config.json`, `generation_config.json` and
            `config.json` in the same folder are read when present.

    Attributes:
        bos_id: `<|begin_of_text|>` for Llama-3.
        eos_id: The end-of-text id `encode(..., eos=True)` appends (tokenizer_config.json's `eos_token`:
            `<|eot_id|>` for Llama-3 Instruct, `<|end_of_text|>` for the base models).
        eos_ids: Every id that ends generation, `eos_id` first: the ids generation_config.json or
            config.json list, and `<|eot_id|>` when the vocabulary has it (the end of a chat turn).
        pad_id: `pad_token` if the tokenizer has one, else `eos_id` (Llama-3 has none); only used to fill
            positions an attention mask hides, and it decodes to nothing.
        special_ids: Special token text -> id (never produced by `encode` from text).
        vocab_size: Number of ids.
    """

    chat_format = "llama3"  # what `encode_chat` writes (templates.prompt_ids checks it)

    def __init__(self, path: str | os.PathLike):
        check_path(path, "BPETokenizer path")
        self.path = Path(path)
        spec = read_json(self.path)
        self.bpe = ByteLevelBPE(spec, str(self.path))
        self.vocab_size: int = self.bpe.vocab_size
        self.special_ids: dict[str, int] = dict(self.bpe.special)
        folder = self.path.parent
        config = read_json(folder / "tokenizer_config.json", required=False) or {}
        self.bos_id: int = self._token_id(config, "bos_token", LLAMA3_BOS, folder)
        self.eos_id: int = self._token_id(config, "eos_token", LLAMA3_EOS, folder)
        listed = []
        for name in ("generation_config.json", "config.json"):
            value = (read_json(folder / name, required=False) or {}).get("eos_token_id")
            listed += value if isinstance(value, list) else [value]
        extra = [self.special_ids.get(END_OF_TURN)] + listed
        valid = [i for i in extra if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.vocab_size]
        self.eos_ids: tuple[int, ...] = tuple(dict.fromkeys([self.eos_id] + valid))
        pad = _content(config.get("pad_token"))
        self.pad_id: int = self._token_id(config, "pad_token", None, folder) if pad else self.eos_id

    def _token_id(self, config: dict[str, Any], key: str, default: str | None, folder: Path) -> int:
        """The id of tokenizer_config.json's `key` token (a string or an AddedToken dict), else `default`'s."""
        text = _content(config.get(key)) or default
        token_id = self.special_ids.get(text, self.bpe.added.get(text, self.bpe.vocab.get(text)))
        if token_id is None:
            where = folder / "tokenizer_config.json" if config.get(key) else self.path
            raise MiniLlamaError(f"{where}: {key} {text!r} is not a token of {self.path.name}")
        return token_id

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids of `text`, with BOS first / EOS last if asked (special tokens' text stays text)."""
        if not isinstance(text, str):
            raise MiniLlamaError(f"BPETokenizer.encode expects a str, got {type(text).__name__}")
        return ([self.bos_id] if bos else []) + self.bpe.encode(text) + ([self.eos_id] if eos else [])

    def encode_batch(self, texts: Sequence[str], bos: bool = True, eos: bool = False) -> list[list[int]]:
        """`encode` for many texts."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise MiniLlamaError(f"BPETokenizer.encode_batch expects a list of str, got {type(texts).__name__}")
        return [self.encode(t, bos=bos, eos=eos) for t in texts]

    def decode(self, ids: Iterable[int], stop_at_eos: bool = False) -> str:
        """Text of `ids` (a list or a 1-D tensor). Special tokens (BOS, EOS, headers) decode to nothing, as
        SentencePiece's control pieces do; bytes that are not valid UTF-8 (a character cut between two
        tokens) become U+FFFD. `stop_at_eos=True` drops everything from the first of `eos_ids` on."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise MiniLlamaError(f"BPETokenizer.decode expects a list or 1-D tensor of token ids, got "
                                 f"{type(ids).__name__}")
        ids = list(ids)
        for i in ids:
            if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i not in self.bpe.id_to_token:
                raise MiniLlamaError(f"BPETokenizer.decode: {i!r} is not a token id in [0, {self.vocab_size})")
        ids = [int(i) for i in ids]
        if stop_at_eos:
            ends = [k for k, i in enumerate(ids) if i in self.eos_ids]
            ids = ids[:ends[0]] if ends else ids
        return self.bpe.decode_bytes(ids).decode("utf-8", errors="replace")

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a dialog in Llama-3's header format (`chat_formats.llama3_chat_ids`)."""
        return llama3_chat_ids(self, messages)


def _content(token: Any) -> str | None:
    """tokenizer_config.json writes a token as a string or as an AddedToken dict {"content": ...}."""
    return token.get("content") if isinstance(token, dict) else token if isinstance(token, str) else None


def read_json(path: Path, required: bool = True) -> dict[str, Any] | None:
    """A JSON object from `path` (None for an optional file that is absent); one line on any problem."""
    if not path.is_file():
        if required:
            raise MiniLlamaError(f"{path}: tokenizer file not found")
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MiniLlamaError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MiniLlamaError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MiniLlamaError(f"{path}: expected a JSON object")
    return value
