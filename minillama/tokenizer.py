"""The Llama-2 SentencePiece tokenizer and the Llama-2 chat format, as in Meta's reference code
(`llama/tokenizer.py` and `Llama.chat_completion` in facebookresearch/llama)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

from .errors import MiniLlamaError
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
        pad_id: The model's pad id, or 0 (`<unk>`) when it has none (Llama-2 has none); only used to fill
            padding positions that an attention mask hides.
        vocab_size: Number of pieces (32000).
    """

    def __init__(self, path: str | os.PathLike):
        import sentencepiece as spm

        self.path = Path(path)
        if not self.path.is_file():
            raise MiniLlamaError(f"{self.path}: tokenizer file not found")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except (RuntimeError, OSError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise MiniLlamaError(f"{self.path}: not a SentencePiece model ({first})") from None
        self.vocab_size: int = self.sp.vocab_size()
        self.bos_id: int = self.sp.bos_id()
        self.eos_id: int = self.sp.eos_id()
        self.pad_id: int = self.sp.pad_id() if self.sp.pad_id() >= 0 else 0

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids of `text`, with BOS first / EOS last if asked."""
        if not isinstance(text, str):
            raise MiniLlamaError(f"Tokenizer.encode expects a str, got {type(text).__name__}")
        ids = self.sp.encode(text)
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def encode_batch(self, texts: Sequence[str], bos: bool = True, eos: bool = False) -> list[list[int]]:
        """`encode` for many texts in one SentencePiece call."""
        return [([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])
                for ids in self.sp.encode(list(texts))]

    def decode(self, ids: Iterable[int], stop_at_eos: bool = False) -> str:
        """Text of `ids` (a list, or a 1-D tensor), as `SentencePieceProcessor.decode` gives it.

        BOS and EOS decode to nothing, but `<unk>` (id 0, also our `pad_id`) decodes to " ⁇ ": pass
        `stop_at_eos=True` to drop everything from the first EOS on (the padding `generate` writes after
        a row's EOS).
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        if stop_at_eos and self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        return self.sp.decode(ids)

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a dialog in the Llama-2 chat format, exactly as Meta's `chat_completion` builds them.

        An optional first system message is folded into the first user message as
        `<<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user}`; each (user, assistant) pair becomes
        `BOS [INST] {user} [/INST] {assistant} EOS`, and a final user message `BOS [INST] {user} [/INST]`
        (the prompt the model answers). Contents are stripped. A dialog that ends with an assistant
        message (a training example) is accepted too: it is all complete pairs.

        Raises:
            MiniLlamaError: Roles not alternating user/assistant, or contents holding the special tags.
        """
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


def load_tokenizer(path_or_id: str | os.PathLike) -> Tokenizer:
    """A `Tokenizer` from a `tokenizer.model` file, a folder holding one, or a Hub repo id.

    Hub downloads go through `huggingface_hub` (honouring `HF_TOKEN`, `HF_HUB_OFFLINE` and the cache).
    """
    path = Path(path_or_id).expanduser()
    if path.is_file():
        return Tokenizer(path)
    if path.is_dir():
        if not (path / "tokenizer.model").is_file():
            raise MiniLlamaError(f"{path}: no tokenizer.model in this folder (pass --tokenizer PATH)")
        return Tokenizer(path / "tokenizer.model")
    text = str(path_or_id)
    if not is_hub_id(text):
        raise MiniLlamaError(f"{text}: tokenizer file or folder not found")
    return Tokenizer(download_file(text, "tokenizer.model"))
