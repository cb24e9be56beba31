"""`BPETokenizer`: Llama-3's tokenizer (a byte-level BPE in `tokenizer.json`) with the interface of the
SentencePiece `Tokenizer`: `encode(text, bos, eos)`, `encode_batch`, `decode(ids, stop_at_eos)`, `bos_id`,
`eos_id` / `eos_ids`, `pad_id`, `vocab_size`, `path` and `encode_chat` (the model's own chat template, or
Llama-3's header format). It reads GPT-2-style tokenizers too (SmolLM2: ChatML, no BOS).

Which tokens are BOS and EOS is not in tokenizer.json but beside it: `tokenizer_config.json`
(`bos_token`, `eos_token`, `pad_token`) and `generation_config.json` / `config.json` (`eos_token_id`,
one id or several). Without them Llama-3's names are used (`<|begin_of_text|>`, `<|end_of_text|>`).
Whether `encode` puts them around a text by default is tokenizer.json's post_processor, as in
transformers 5 (which ignores tokenizer_config.json's `add_bos_token` when a tokenizer.json is present):
Llama-3's adds BOS, SmolLM2's nothing. `from_spec` builds the same from two dicts (a GGUF file's).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from .bpe import ByteLevelBPE
from .chat_formats import END_OF_TURN, llama3_chat_ids
from .chat_template import ChatTemplate, chat_template_ids, find_chat_template, template_variables
from .errors import MiniLlamaError, check_path, read_json

# Llama 3 (Meta 2024), llama3/tokenizer.py: the special tokens that begin and end a text.
LLAMA3_BOS, LLAMA3_EOS = "<|begin_of_text|>", "<|end_of_text|>"


class BPETokenizer:
    """A byte-level BPE tokenizer read from `tokenizer.json` (Llama-3.x: 128,256 ids).

    Args:
        path: The `tokenizer.json` file; `tokenizer_config.json`, `chat_template.jinja`,
            `generation_config.json` and `config.json` in the same folder are read when present.

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
        prefix_ids, suffix_ids: What `encode` adds by default (`bos=None`, `eos=None`), as transformers does:
            tokenizer.json's post_processor (Llama-3: `(bos_id,)`, `()`; SmolLM2: `()`, `()`).
        chat_template: The model's `ChatTemplate` (tokenizer_config.json's `chat_template` or the
            `chat_template.jinja` beside it), or None.
    """

    chat_format = "llama3"  # the hand-written format this tokenizer can write (templates.chat_ids checks it)

    def __init__(self, path: str | os.PathLike):
        check_path(path, "BPETokenizer path")
        path = Path(path)
        spec = read_json(path, what="tokenizer file")
        folder = path.parent
        config = dict(read_json(folder / "tokenizer_config.json", required=False) or {})
        # transformers 5 drops add_bos_token/add_eos_token when a tokenizer.json is present
        # (tokenization_utils_base `_from_pretrained`): its post_processor alone decides.
        config.pop("add_bos_token", None)
        config.pop("add_eos_token", None)
        listed = []
        for name in ("generation_config.json", "config.json"):
            value = (read_json(folder / name, required=False) or {}).get("eos_token_id")
            listed += value if isinstance(value, list) else [value]
        template = find_chat_template(config, str(folder / "tokenizer_config.json"), folder)
        self._setup(spec, config, path, str(folder / "tokenizer_config.json"), listed, template)

    @classmethod
    def from_spec(cls, spec: dict[str, Any], config: dict[str, Any], source: str) -> "BPETokenizer":
        """A tokenizer from a tokenizer.json-shaped `spec` and a tokenizer_config.json-shaped `config` (what a
        GGUF file holds), `source` naming their origin in errors (and becoming `path`).

        `config` may set `add_bos_token` / `add_eos_token`: when present they decide whether `encode` adds
        BOS / EOS (transformers passes them as explicit arguments when it builds a tokenizer from a GGUF
        file), else `spec`'s post_processor does. `config["chat_template"]` is the model's template.
        """
        tokenizer = cls.__new__(cls)
        tokenizer._setup(spec, dict(config), Path(source), source, [],
                         find_chat_template(config, source))
        return tokenizer

    def _setup(self, spec: dict[str, Any], config: dict[str, Any], path: Path, config_source: str,
               listed_eos: list, template: str | None) -> None:
        self.path = path
        self.bpe = ByteLevelBPE(spec, str(path))
        self.vocab_size: int = self.bpe.vocab_size
        self.special_ids: dict[str, int] = dict(self.bpe.special)
        self.bos_id: int = self._token_id(config, "bos_token", LLAMA3_BOS, config_source)
        self.eos_id: int = self._token_id(config, "eos_token", LLAMA3_EOS, config_source)
        extra = [self.special_ids.get(END_OF_TURN)] + listed_eos
        valid = [i for i in extra if isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.vocab_size]
        self.eos_ids: tuple[int, ...] = tuple(dict.fromkeys([self.eos_id] + valid))
        pad = _content(config.get("pad_token"))
        self.pad_id: int = self._token_id(config, "pad_token", None, config_source) if pad else self.eos_id
        if "add_bos_token" in config or "add_eos_token" in config:  # transformers' update_post_processor
            self.prefix_ids = (self.bos_id,) if config.get("add_bos_token") else ()
            self.suffix_ids = (self.eos_id,) if config.get("add_eos_token") else ()
        else:
            self.prefix_ids, self.suffix_ids = post_processor_ids(spec.get("post_processor"), str(path))
        self.chat_template: ChatTemplate | None = None
        if template is not None:
            self.chat_template = ChatTemplate(template, config_source, template_variables(config))

    def _token_id(self, config: dict[str, Any], key: str, default: str | None, config_source: str) -> int:
        """The id of tokenizer_config.json's `key` token (a string or an AddedToken dict), else `default`'s."""
        text = _content(config.get(key)) or default
        token_id = self.special_ids.get(text, self.bpe.added.get(text, self.bpe.vocab.get(text)))
        if token_id is None:
            where = config_source if config.get(key) else self.path
            raise MiniLlamaError(f"{where}: {key} {text!r} is not a token of {self.path.name}")
        return token_id

    def encode(self, text: str, bos: bool | None = None, eos: bool | None = None) -> list[int]:
        """Token ids of `text` (special tokens' text stays text), with BOS first / EOS last if asked.

        `bos` / `eos` None (the default): as the model's own tokenizer does, `AutoTokenizer(...)(text)`
        (tokenizer.json's post_processor: Llama-3 puts `<|begin_of_text|>` first, SmolLM2 adds nothing).
        """
        first = list(self.prefix_ids) if bos is None else [self.bos_id] if bos else []
        last = list(self.suffix_ids) if eos is None else [self.eos_id] if eos else []
        return first + self.bpe.encode(text) + last

    def encode_batch(self, texts: Sequence[str], bos: bool | None = None,
                     eos: bool | None = None) -> list[list[int]]:
        """`encode` for many texts."""
        return [self.encode(t, bos=bos, eos=eos) for t in texts]

    def encode_rendered(self, text: str) -> list[int]:
        """Token ids of a rendered chat template: special tokens' text is those tokens, nothing is added
        (`tokenizer(text, add_special_tokens=False)`)."""
        return self.bpe.encode(text, special=True)

    def control_texts(self) -> list[str]:
        """The special tokens' text (what a chat message may not contain)."""
        return list(self.special_ids)

    def decode(self, ids: Iterable[int], stop_at_eos: bool = False) -> str:
        """Text of `ids` (a list or a 1-D tensor). Special tokens (BOS, EOS, headers) decode to nothing, as
        SentencePiece's control pieces do; bytes that are not valid UTF-8 (a character cut between two
        tokens) become U+FFFD. `stop_at_eos=True` drops everything from the first of `eos_ids` on."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        for i in ids:  # ids from a model whose vocabulary is not this tokenizer's
            if i not in self.bpe.id_to_token:
                raise MiniLlamaError(f"BPETokenizer.decode: {i!r} is not a token id in [0, {self.vocab_size})")
        if stop_at_eos:
            ends = [k for k, i in enumerate(ids) if i in self.eos_ids]
            ids = ids[:ends[0]] if ends else ids
        return self.bpe.decode_bytes(ids).decode("utf-8", errors="replace")

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a dialog in the model's own chat template (`chat_template.chat_template_ids`: the
        generation prompt follows a final user message), or, for a tokenizer without one, in Llama-3's
        header format (`chat_formats.llama3_chat_ids`)."""
        if self.chat_template is not None:
            return chat_template_ids(self, messages)
        return llama3_chat_ids(self, messages)


def post_processor_ids(pp: dict[str, Any] | None, source: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ids tokenizer.json's post_processor puts before and after a single text: Llama-3's
    `Sequence[ByteLevel, TemplateProcessing("<|begin_of_text|> $A")]` gives ((128000,), ())."""
    kind = (pp or {}).get("type")
    if pp is None or kind == "ByteLevel":
        return (), ()
    if kind == "Sequence":
        parts = [post_processor_ids(p, source) for p in pp.get("processors") or []]
        return sum((p[0] for p in parts), ()), sum((p[1] for p in parts), ())
    if kind in ("RobertaProcessing", "BertProcessing"):
        return (pp["cls"][1],), (pp["sep"][1],)
    if kind == "TemplateProcessing":
        items, specials = pp.get("single") or [], pp.get("special_tokens") or {}
        at = [k for k, item in enumerate(items) if "Sequence" in item]
        if len(at) != 1:
            raise MiniLlamaError(f"{source}: post_processor TemplateProcessing single has {len(at)} sequences, not 1")

        def ids(part: list) -> tuple[int, ...]:
            return tuple(i for item in part for i in specials[item["SpecialToken"]["id"]]["ids"])
        try:
            return ids(items[:at[0]]), ids(items[at[0] + 1:])
        except (KeyError, TypeError):
            raise MiniLlamaError(f"{source}: post_processor TemplateProcessing names a token that its "
                                 "special_tokens does not list") from None
    raise MiniLlamaError(f"{source}: post_processor {kind!r} is not supported (TemplateProcessing, ByteLevel, "
                         "Roberta/BertProcessing or a Sequence of them)")


def _content(token: Any) -> str | None:
    """tokenizer_config.json writes a token as a string or as an AddedToken dict {"content": ...}."""
    return token.get("content") if isinstance(token, dict) else token if isinstance(token, str) else None
