"""The Llama-2 SentencePiece tokenizer and the Llama-2 chat format, as in Meta's reference code
(`llama/tokenizer.py` and `Llama.chat_completion` in facebookresearch/llama), and `load_tokenizer`, which
picks it (`tokenizer.model`: Llama-2, Mistral) or the byte-level BPE of `bpe_tokenizer.py`
(`tokenizer.json` only: Llama-3)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from .bpe_tokenizer import BPETokenizer
from .chat_template import ChatTemplate, chat_template_ids, find_chat_template, template_variables
from .errors import MiniLlamaError, check_path, read_json
from .hub import download_file, is_hub_id

# Chat markers, verbatim from Meta's llama/generation.py.
B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"
SPECIAL_TAGS = (B_INST, E_INST, "<<SYS>>", "<</SYS>>")


class Tokenizer:
    """SentencePiece encode/decode with Llama-2's BOS/EOS handling.

    `encode` is `SentencePieceProcessor.encode(text)` (no extra options, exactly what Meta calls) plus
    an optional BOS in front and EOS at the end.

    Args:
        path: The `tokenizer.model` file.

    Attributes:
        bos_id, eos_id: 1 and 2 for Llama-2.
        add_bos, add_eos: What `encode` adds by default (tokenizer_config.json beside the model; True, False).
        legacy: How a rendered chat template is encoded (see `encode_rendered`): as the tokenizer.json beside
            the model does when there is one (what transformers loads), else tokenizer_config.json's `legacy`
            (default True).
        chat_template: The model's `ChatTemplate` (tokenizer_config.json beside the model), or None.
        eos_ids: `(eos_id,)`, the same attribute as `BPETokenizer.eos_ids` (Llama-3 has several).
        pad_id: The model's pad id, or 0 (`<unk>`) when it has none (Llama-2 has none); only used to fill
            padding positions that an attention mask hides.
        vocab_size: Number of pieces (32000).
    """

    chat_format = "llama2-chat"  # what `encode_chat` writes (templates.prompt_ids checks it)

    def __init__(self, path: str | os.PathLike):
        check_path(path, "Tokenizer path")
        self.path = Path(path)
        if not self.path.is_file():
            raise MiniLlamaError(f"{self.path}: tokenizer file not found")
        # tokenizer_config.json beside the model (Hub layout): whether encode adds BOS / EOS (transformers'
        # LlamaTokenizer: add_bos_token true, add_eos_token false by default) and the chat template.
        config_path = self.path.parent / "tokenizer_config.json"
        config = read_json(config_path, required=False) or {}
        template = find_chat_template(config, str(config_path), self.path.parent)
        legacy = _legacy(config, self.path.parent / "tokenizer.json") if template else True
        self._setup({"model_file": str(self.path)}, config, str(config_path), template, legacy)

    @classmethod
    def from_model_proto(cls, proto: bytes, config: dict, source: str) -> "Tokenizer":
        """A tokenizer from a serialised SentencePiece model (what a GGUF file describes: `gguf.sentencepiece_proto`)
        and a tokenizer_config.json-shaped `config` (add_bos_token, add_eos_token, chat_template, legacy: default
        True, as without a template; `gguf.sentencepiece_config` gives a GGUF's), `source` naming their origin in
        errors (and becoming `path`)."""
        tokenizer = cls.__new__(cls)
        tokenizer.path = Path(source)
        tokenizer._setup({"model_proto": proto}, config, source, find_chat_template(config, source),
                         bool(config.get("legacy", True)))
        return tokenizer

    def _setup(self, model: dict, config: dict, config_source: str, template: str | None, legacy: bool) -> None:
        import sentencepiece as spm

        try:
            self.sp = spm.SentencePieceProcessor(**model)
        except (RuntimeError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise MiniLlamaError(f"{self.path}: not a SentencePiece model ({first})") from None
        self.vocab_size: int = self.sp.vocab_size()
        self.bos_id: int = self.sp.bos_id()
        self.eos_id: int = self.sp.eos_id()
        self.eos_ids: tuple[int, ...] = (self.eos_id,)
        self.pad_id: int = self.sp.pad_id() if self.sp.pad_id() >= 0 else 0
        self.add_bos: bool = bool(config.get("add_bos_token", True))
        self.add_eos: bool = bool(config.get("add_eos_token", False))
        self.legacy: bool = legacy
        names = {key: self.sp.id_to_piece(i) for key, i in (("bos_token", self.bos_id), ("eos_token", self.eos_id),
                                                             ("unk_token", self.sp.unk_id())) if i >= 0}
        self.chat_template: ChatTemplate | None = (
            ChatTemplate(template, config_source, template_variables(config, names)) if template else None)
        self._word_ids: dict[str, list[int]] = {}  # `_bpe_word`'s cache
        self._controls = {names[k]: i for k, i in (("bos_token", self.bos_id), ("eos_token", self.eos_id),
                                                   ("unk_token", self.sp.unk_id())) if k in names}

    def encode(self, text: str, bos: bool | None = None, eos: bool | None = None) -> list[int]:
        """Token ids of `text`, with BOS first / EOS last if asked (None: as the model's tokenizer does,
        tokenizer_config.json's add_bos_token / add_eos_token; Llama-2: BOS, no EOS)."""
        ids = self.sp.encode(text)
        return self._wrap(ids, bos, eos)

    def _wrap(self, ids: list[int], bos: bool | None, eos: bool | None) -> list[int]:
        bos = self.add_bos if bos is None else bos
        eos = self.add_eos if eos is None else eos
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def encode_batch(self, texts: Sequence[str], bos: bool | None = None, eos: bool | None = None) -> list[list[int]]:
        """`encode` for many texts in one SentencePiece call."""
        return [self._wrap(ids, bos, eos) for ids in self.sp.encode(list(texts))]

    def encode_rendered(self, text: str) -> list[int]:
        """Token ids of a rendered chat template: the control pieces' text (`<s>`, `</s>`, `<unk>`) is those
        tokens, nothing is added, and each text between them is encoded on its own, as transformers'
        LlamaTokenizer does: with `legacy` (Llama-2's Hub tokenizer) each text gets SentencePiece's dummy
        prefix "▁" (so `<s>[INST]` is `<s> ▁[INST]`, Meta's format); without it only a text at the very start
        does (Metaspace's prepend_scheme "first"; so Mistral's template writes `<s> [INST]`), the others are
        SentencePiece's BPE of the text as it is (`_bpe_word`)."""
        import re

        ids: list[int] = []
        pattern = "|".join(re.escape(t) for t in sorted(self._controls, key=len, reverse=True))
        start = 0
        for match in re.finditer(pattern, text) if pattern else ():
            ids += self._encode_segment(text[start:match.start()], first=start == 0)
            ids.append(self._controls[match.group()])
            start = match.end()
        return ids + self._encode_segment(text[start:], first=start == 0)

    def _encode_segment(self, text: str, first: bool) -> list[int]:
        if not text:
            return []
        if self.legacy or first:
            return self.sp.encode(text)
        words = _words(text.replace(" ", WHITESPACE))
        if len(self._word_ids) > 100_000:  # bound the memory a long-running process spends on the cache
            self._word_ids.clear()
        for word in words:
            if word not in self._word_ids:
                self._word_ids[word] = self._bpe_word(word)
        return [i for word in words for i in self._word_ids[word]]

    def _bpe_word(self, word: str) -> list[int]:
        """SentencePiece's BPE of one word, without the dummy prefix `sp.encode` adds (sentencepiece
        bpe_model.cc `Encode`): merge the adjacent pair whose join is a piece of highest score (the leftmost
        on a tie) until none is; a symbol that is no piece becomes its UTF-8 bytes' `<0xXX>` pieces (byte
        fallback) or `<unk>`."""
        sp, symbols = self.sp, list(word)

        def score(piece: str) -> float | None:
            i = sp.piece_to_id(piece)
            usable = sp.id_to_piece(i) == piece and not (sp.is_unknown(i) or sp.is_control(i) or sp.is_unused(i))
            return sp.get_score(i) if usable else None
        while len(symbols) > 1:
            scores = [score(a + b) for a, b in zip(symbols, symbols[1:])]
            best = max((s, -k) for k, s in enumerate(scores) if s is not None) if any(
                s is not None for s in scores) else None
            if best is None:
                break
            k = -best[1]
            symbols[k:k + 2] = [symbols[k] + symbols[k + 1]]
        ids = []
        for piece in symbols:
            if score(piece) is not None or sp.piece_to_id(piece) != sp.unk_id():
                ids.append(sp.piece_to_id(piece))
            elif sp.piece_to_id("<0x00>") != sp.unk_id():  # byte fallback (Llama, Mistral)
                ids += [sp.piece_to_id(f"<0x{b:02X}>") for b in piece.encode("utf-8")]
            else:
                ids.append(sp.unk_id())
        return ids

    def control_texts(self) -> list[str]:
        """The control pieces' text (what a chat message may not contain)."""
        return list(self._controls)

    def decode(self, ids: Iterable[int], stop_at_eos: bool = False) -> str:
        """Text of `ids` (a list, or a 1-D tensor), as `SentencePieceProcessor.decode` gives it.

        BOS and EOS decode to nothing, but `<unk>` (id 0, also our `pad_id`) decodes to " ⁇ ": pass
        `stop_at_eos=True` to drop everything from the first EOS on (the padding `generate` writes after
        a row's EOS).
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        for i in ids:  # ids from a model whose vocabulary is not this tokenizer's
            if not 0 <= i < self.vocab_size:
                raise MiniLlamaError(f"Tokenizer.decode: {i!r} is not a token id in [0, {self.vocab_size})")
        if stop_at_eos and self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        return self.sp.decode(ids)

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a dialog in the model's own chat template (`chat_template.chat_template_ids`) if
        tokenizer_config.json beside the model gives one, else in the Llama-2 chat format (`llama2_chat_ids`)."""
        if self.chat_template is not None:
            return chat_template_ids(self, messages)
        return self.llama2_chat_ids(messages)

    def llama2_chat_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a dialog in the Llama-2 chat format, exactly as Meta's `chat_completion` builds them.

        An optional first system message is folded into the first user message as
        `<<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user}`; each (user, assistant) pair becomes
        `BOS [INST] {user} [/INST] {assistant} EOS`, and a final user message `BOS [INST] {user} [/INST]`
        (the prompt the model answers). Contents are stripped. A dialog that ends with an assistant
        message (a training example) is accepted too: it is all complete pairs.

        Raises:
            MiniLlamaError: Roles not alternating user/assistant, or contents holding the special tags.
        """
        if isinstance(messages, (str, dict)) or not isinstance(messages, (list, tuple)) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            raise MiniLlamaError("encode_chat: messages must be a list of {'role': str, 'content': str} dicts")
        dialog = [dict(m) for m in messages]
        if not dialog:
            raise MiniLlamaError("encode_chat: the dialog is empty")
        if any(tag in m.get("content", "") for m in dialog for tag in SPECIAL_TAGS):
            raise MiniLlamaError("encode_chat: special tags ([INST], <<SYS>>) are not allowed in messages")
        if dialog[0]["role"] == "system":
            if len(dialog) < 2:
                raise MiniLlamaError("encode_chat: a system message must be followed by a user message")
            dialog = [{"role": dialog[1]["role"],
                       "content": B_SYS + dialog[0]["content"] + E_SYS + dialog[1]["content"]}] + dialog[2:]
        if not (all(m["role"] == "user" for m in dialog[::2])
                and all(m["role"] == "assistant" for m in dialog[1::2])):
            raise MiniLlamaError("encode_chat: roles must be [system], user, assistant, user, ... alternating")
        ids: list[int] = []
        for prompt, answer in zip(dialog[::2], dialog[1::2]):
            ids += self.encode(f"{B_INST} {prompt['content'].strip()} {E_INST} {answer['content'].strip()} ",
                               bos=True, eos=True)
        if dialog[-1]["role"] == "user":
            ids += self.encode(f"{B_INST} {dialog[-1]['content'].strip()} {E_INST}", bos=True, eos=False)
        return ids


WHITESPACE = "\u2581"  # SentencePiece writes a space as "▁"


def _words(text: str) -> list[str]:
    """SentencePiece's words (split_by_whitespace): a new word starts at each "▁" that follows another
    character than "▁", so a run of "▁" stays with the word after it."""
    words, start = [], 0
    for k in range(1, len(text)):
        if text[k] == WHITESPACE and text[k - 1] != WHITESPACE:
            words.append(text[start:k])
            start = k
    return words + [text[start:]]


def _legacy(config: dict, tokenizer_json: Path) -> bool:
    """Whether each text between special tokens gets SentencePiece's dummy prefix: transformers loads the
    tokenizer.json a Hub repo ships beside tokenizer.model, whose normalizer `Prepend("▁")` does so (Llama-2,
    Mistral v0.1) and whose `Metaspace(prepend_scheme="first")` does not; without one, `legacy` decides."""
    spec = read_json(tokenizer_json, required=False) if tokenizer_json.is_file() else None
    if spec is None:
        return bool(config.get("legacy", True))
    steps = [spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}]
    steps = [x for step in steps for x in (step.get("normalizers") or step.get("pretokenizers") or [step])]
    if any(step.get("type") == "Prepend" for step in steps):
        return True
    return any(step.get("type") == "Metaspace" and step.get("prepend_scheme", "always") == "always" for step in steps)


def load_tokenizer(path_or_id: str | os.PathLike) -> Tokenizer | BPETokenizer:
    """The tokenizer of a model: a `tokenizer.model` (SentencePiece `Tokenizer`: Llama-2, Mistral) or a
    `tokenizer.json` (byte-level `BPETokenizer`: Llama-3) file, a folder holding one, or a Hub repo id.

    A folder with both (Mistral ships both) gives the SentencePiece one, the model's own format. Hub
    downloads go through `huggingface_hub` (honouring `HF_TOKEN`, `HF_HUB_OFFLINE` and the cache).
    """
    check_path(path_or_id, "load_tokenizer path_or_id")
    path = Path(path_or_id).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".gguf":  # llama.cpp's file: the tokenizer its metadata describes
            return gguf_tokenizer(path)
        return BPETokenizer(path) if path.suffix == ".json" else Tokenizer(path)
    if path.is_dir():
        if (path / "tokenizer.model").is_file():
            return Tokenizer(path / "tokenizer.model")
        if (path / "tokenizer.json").is_file():
            return BPETokenizer(path / "tokenizer.json")
        raise MiniLlamaError(f"{path}: no tokenizer.model (or tokenizer.json) in this folder (pass --tokenizer "
                             "PATH)")
    text = str(path_or_id)
    if not is_hub_id(text):
        raise MiniLlamaError(f"{text}: tokenizer file or folder not found")
    try:
        model_file = download_file(text, "tokenizer.model")
    except MiniLlamaError as exc:
        if exc.exit_code != 2:  # offline or a server error: the second file would fail the same way
            raise
        first = exc
    else:
        _download_optional(text, ("tokenizer_config.json", "chat_template.jinja", "tokenizer.json"))
        return Tokenizer(model_file)
    try:
        tokenizer_json = download_file(text, "tokenizer.json")
    except MiniLlamaError:
        raise first from None
    _download_optional(text, ("tokenizer_config.json", "generation_config.json", "chat_template.jinja"))
    return BPETokenizer(tokenizer_json)


def gguf_tokenizer(path: str | os.PathLike) -> Tokenizer | BPETokenizer:
    """The tokenizer of a GGUF file: a SentencePiece `Tokenizer` rebuilt by `gguf.sentencepiece_proto` (Llama-2,
    Mistral: `tokenizer.ggml.model` "llama"), else a `BPETokenizer` from `gguf.tokenizer_parts` (byte-level BPE,
    "gpt2"; any other model is refused there, in one line)."""
    from .gguf import read_gguf, sentencepiece_config, sentencepiece_proto, tokenizer_parts

    gguf = read_gguf(path)
    if gguf.metadata.get("tokenizer.ggml.model") == "llama":
        return Tokenizer.from_model_proto(sentencepiece_proto(gguf), sentencepiece_config(gguf), str(path))
    spec, config = tokenizer_parts(gguf)
    return BPETokenizer.from_spec(spec, config, str(path))


def _download_optional(repo: str, names: tuple[str, ...]) -> None:
    """Fetch the files beside a tokenizer that the repo may have (BOS/EOS, the chat template)."""
    for name in names:
        try:
            download_file(repo, name)
        except MiniLlamaError:
            pass
