"""Byte-level BPE (GPT-2, Radford et al. 2019; Llama 3, Meta 2024) read from a Hugging Face `tokenizer.json`.

Encoding a text takes four steps:

1. Cut out the non-special added tokens (matched longest first). Special tokens (`<|eot_id|>` ...) are
   not matched in text: a user who types `<|eot_id|>` gets those characters, not the control token, as
   in Meta's `llama3/tokenizer.py` (`encode` with no allowed special tokens). Chat formats insert them
   by id.
2. Split each piece with the pre-tokenizer's pattern (Llama 3's: contractions, letter runs, 1-3 digits,
   punctuation runs, newlines, spaces), keeping the gaps between matches ("Isolated").
3. Write each part's UTF-8 bytes as GPT-2's printable stand-in characters (`bytes_to_unicode`).
4. Merge adjacent symbols by rank, the lowest-ranked pair first, until no pair has a merge; with
   `ignore_merges` (Llama 3) a part that is itself in the vocabulary is taken whole.

A vocabulary need not hold all 256 byte symbols (SmolLM2's lacks 21: 0x04, 0xc0, 0xff ...). A byte with no
symbol becomes `model.unk_token` if the model names one, else it is dropped before merging, so its
neighbours may merge across the gap ("!\x04!" -> "!!"): tokenizers' `BPE::merge_word` skips a character
that is not in the vocabulary when there is neither byte fallback nor an unknown token.

The pattern uses Unicode classes (`\\p{L}`, `\\p{N}`) that Python's `re` does not know, so it is compiled with
the `regex` package, verbatim as tokenizer.json writes it.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from .errors import MiniLlamaError

# The pattern of `ByteLevel(use_regex=True)`, GPT-2's (openai/gpt-2 encoder.py; tokenizers' byte_level.rs).
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to printable characters (openai/gpt-2, encoder.py).

    Printable Latin-1 bytes stand for themselves; the other 68 (control characters, space, ...) are
    shifted to U+0100 onwards, so a space is "Ġ" and a newline "Ċ".
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, shifted = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + shifted)
            shifted += 1
    return dict(sorted(chars.items()))


def split_pattern(pre: dict | None, source: str) -> str:
    """The split pattern of a byte-level pre-tokenizer: Llama 3's `Sequence[Split(Regex, Isolated),
    ByteLevel(use_regex=false)]`, or GPT-2's lone `ByteLevel(use_regex=true)`; anything else is refused."""
    steps = (pre or {}).get("pretokenizers", [pre]) if (pre or {}).get("type") == "Sequence" else [pre]
    pattern = None
    for i, step in enumerate(steps):
        kind = (step or {}).get("type")
        if kind == "Split" and pattern is None and i < len(steps) - 1:
            if "Regex" not in step.get("pattern", {}) or step.get("behavior") != "Isolated" or step.get("invert"):
                raise MiniLlamaError(f"{source}: pre_tokenizer Split {step.get('pattern')} {step.get('behavior')} "
                                     "is not supported (a Regex pattern with behavior Isolated only)")
            pattern = step["pattern"]["Regex"]
        elif kind == "ByteLevel" and i == len(steps) - 1:
            if step.get("add_prefix_space"):
                raise MiniLlamaError(f"{source}: pre_tokenizer ByteLevel add_prefix_space=true is not supported")
            if step.get("use_regex", True):
                if pattern is not None:
                    raise MiniLlamaError(f"{source}: pre_tokenizer splits twice (Split, then ByteLevel use_regex)")
                pattern = GPT2_PATTERN
            elif pattern is None:
                raise MiniLlamaError(f"{source}: pre_tokenizer ByteLevel use_regex=false has no Split before it")
        else:
            raise MiniLlamaError(f"{source}: pre_tokenizer {kind!r} is not supported (a byte-level BPE needs Split "
                                 "+ ByteLevel, as Llama 3, or ByteLevel, as GPT-2)")
    if pattern is None:
        raise MiniLlamaError(f"{source}: pre_tokenizer has no step (a byte-level BPE needs Split + ByteLevel)")
    return pattern


class ByteLevelBPE:
    """The byte-level BPE model of a `tokenizer.json`: vocabulary, merge ranks, added tokens.

    Args:
        spec: The parsed tokenizer.json.
        source: The file name used in error messages.

    Attributes:
        vocab: Token string (in GPT-2's byte characters) -> id.
        added: Added token content -> id; `special` holds the special ones (never matched in text).
        vocab_size: Largest id + 1 (Llama 3: 128000 BPE tokens + 256 special = 128256).
    """

    def __init__(self, spec: dict[str, Any], source: str):
        import regex  # here, not at the top: only a byte-level BPE needs it (see the module docstring)

        model = spec.get("model") or {}
        if model.get("type") != "BPE":
            raise MiniLlamaError(f"{source}: model.type={model.get('type')!r} is not supported (a BPE model only)")
        for key, allowed in (("dropout", (None,)), ("byte_fallback", (False, None)), ("fuse_unk", (False, None)),
                             ("continuing_subword_prefix", (None, "")), ("end_of_word_suffix", (None, ""))):
            if model.get(key) not in allowed:
                raise MiniLlamaError(f"{source}: model.{key}={model[key]!r} is not supported")
        if spec.get("normalizer") is not None:
            raise MiniLlamaError(f"{source}: normalizer {spec['normalizer'].get('type')!r} is not supported (a "
                                 "byte-level BPE reads the text as it is)")
        if (spec.get("decoder") or {}).get("type") != "ByteLevel":
            raise MiniLlamaError(f"{source}: decoder {(spec.get('decoder') or {}).get('type')!r} is not supported "
                                 "(ByteLevel only)")
        self.pattern = regex.compile(split_pattern(spec.get("pre_tokenizer"), source))
        self.vocab: dict[str, int] = dict(model.get("vocab") or {})
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in self.vocab.values()):
            raise MiniLlamaError(f"{source}: model.vocab must map token strings to integer ids >= 0")
        # tokenizers' BPE::merge_word: a symbol not in the vocabulary becomes unk_token, or is dropped.
        self.unk: str | None = model.get("unk_token")
        if self.unk is not None and self.unk not in self.vocab:
            raise MiniLlamaError(f"{source}: model.unk_token {self.unk!r} is not in model.vocab")
        self.ranks: dict[tuple[str, str], int] = {}
        for rank, merge in enumerate(model.get("merges") or []):
            pair = tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge)  # "a b" or ["a", "b"]
            if len(pair) != 2 or (pair[0] + pair[1]) not in self.vocab:
                raise MiniLlamaError(f"{source}: model.merges[{rank}] {merge!r} is not a pair whose join is in "
                                     "the vocabulary")
            self.ranks.setdefault(pair, rank)
        self.ignore_merges = bool(model.get("ignore_merges", False))
        self.added: dict[str, int] = {}
        self.special: dict[str, int] = {}
        strips: dict[str, tuple[bool, bool]] = {}
        for i, token in enumerate(spec.get("added_tokens") or []):
            if not isinstance(token, dict) or not isinstance(token.get("content"), str) or not token["content"] \
                    or isinstance(token.get("id"), bool) or not isinstance(token.get("id"), int) or token["id"] < 0:
                raise MiniLlamaError(f"{source}: added_tokens[{i}] needs a non-empty 'content' and an integer 'id'")
            if any(token.get(flag) for flag in ("lstrip", "rstrip", "single_word")) and not token.get("special"):
                raise MiniLlamaError(f"{source}: added_tokens[{i}] {token.get('content')!r} sets lstrip/rstrip/"
                                     "single_word, which is not supported (on a token that is not special)")
            if token.get("special") and token.get("single_word"):
                raise MiniLlamaError(f"{source}: added_tokens[{i}] {token.get('content')!r} sets single_word, "
                                     "which is not supported")
            strips[token["content"]] = (bool(token.get("lstrip")), bool(token.get("rstrip")))
            (self.special if token.get("special") else self.added)[token["content"]] = token["id"]
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.id_to_token.update({i: t for t, i in {**self.added, **self.special}.items()})
        self.vocab_size = max(self.id_to_token) + 1
        longest_first = sorted(self.added, key=len, reverse=True)
        self.added_pattern = regex.compile("|".join(regex.escape(t) for t in longest_first)) if longest_first else None
        self.special_id_set = set(self.special.values())
        # A rendered chat template writes special tokens as text: tokenizers' AddedVocabulary matches every
        # added token, special or not, leftmost-longest (what `tokenizer(text)` does with split_special_tokens off).
        # A special token with lstrip/rstrip takes the whitespace beside it into its match (tokenizers' AddedToken).
        every = sorted({**self.added, **self.special}, key=len, reverse=True)
        self.every_added = [{**self.added, **self.special}[t] for t in every]  # by alternative, 1-based group - 1
        self.special_pattern = regex.compile("|".join(
            "(" + (r"\s*" if strips.get(t, (0, 0))[0] else "") + regex.escape(t)
            + (r"\s*" if strips.get(t, (0, 0))[1] else "") + ")" for t in every)) if every else None
        self.byte_chars = bytes_to_unicode()
        self.char_bytes = {c: b for b, c in self.byte_chars.items()}
        self.cache: dict[str, list[int]] = {}

    def encode(self, text: str, special: bool = False) -> list[int]:
        """Token ids of `text` (no BOS/EOS), steps 1-4 of the module docstring; `special=True` also matches
        the special tokens' text (a rendered chat template, where `<|im_start|>` is the control token)."""
        pattern = self.special_pattern if special else self.added_pattern
        ids, start = [], 0
        for match in pattern.finditer(text) if pattern is not None else ():
            token_id = self.every_added[match.lastindex - 1] if special else self.added[match.group()]
            ids += self._encode_piece(text[start:match.start()]) + [token_id]
            start = match.end()
        return ids + self._encode_piece(text[start:])

    def _encode_piece(self, text: str) -> list[int]:
        ids, start = [], 0
        for match in self.pattern.finditer(text):  # "Isolated": the gaps between matches are parts too
            for part in (text[start:match.start()], match.group()):
                if part:
                    ids += self._merge(part)
            start = match.end()
        return ids + (self._merge(text[start:]) if text[start:] else [])

    def _merge(self, part: str) -> list[int]:
        """BPE of one pre-tokenized part: GPT-2's `bpe` loop (openai/gpt-2 encoder.py), merging every
        occurrence of the lowest-ranked adjacent pair, left to right, until none has a rank."""
        word = "".join(self.byte_chars[b] for b in part.encode("utf-8"))
        if word in self.cache:
            return self.cache[word]
        if self.ignore_merges and word in self.vocab:
            return [self.vocab[word]]
        symbols = [c if c in self.vocab else self.unk for c in word]  # a byte with no symbol: unk, or dropped
        symbols = [c for c in symbols if c is not None]
        while len(symbols) > 1:
            rank, first = min((self.ranks.get(pair, float("inf")), pair) for pair in zip(symbols, symbols[1:]))
            if rank == float("inf"):
                break
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == first:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        ids = [self.vocab[s] for s in symbols]
        if len(self.cache) > 100_000:  # bound the memory a long-running process spends on the cache
            self.cache.clear()
        self.cache[word] = ids
        return ids

    def decode_bytes(self, ids: list[int]) -> bytes:
        """The UTF-8 bytes of `ids`; special tokens give none (as SentencePiece's control pieces).

        A token whose characters are all byte stand-ins gives those bytes, any other (an added token
        such as "<think>" written in plain characters) its own UTF-8 (tokenizers' ByteLevel decoder).
        """
        out = bytearray()
        for i in ids:
            if i in self.special_id_set:
                continue
            token = self.id_to_token[i]
            if all(c in self.char_bytes for c in token):
                out += bytes(self.char_bytes[c] for c in token)
            else:
                out += token.encode("utf-8")
        return bytes(out)
