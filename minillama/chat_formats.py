"""The chat formats of Llama-3 and Mistral: a dialog becomes the token ids the model was tuned on.

Each equals transformers' `apply_chat_template` with the model's published template (kept verbatim in
`tests/fixtures/chat_templates/`, tested token for token). Llama-2's format is `Tokenizer.encode_chat`
(Meta's `chat_completion`). Side by side, for a system prompt S, a question Q and an answer A:

    llama2-chat  <s>[INST] <<SYS>>\\nS\\n<</SYS>>\\n\\nQ [/INST] A </s><s>[INST] Q2 [/INST]
    llama3       <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\nS<|eot_id|>
                 <|start_header_id|>user<|end_header_id|>\\n\\nQ<|eot_id|>
                 <|start_header_id|>assistant<|end_header_id|>\\n\\nA<|eot_id|> ... (then the assistant header)
    mistral      <s> [INST] S\\n\\nQ [/INST] A</s> [INST] Q2 [/INST]

The special markers are inserted by id, never parsed from text, so a message cannot forge one; messages
that contain a marker's text are refused, as `Tokenizer.encode_chat` refuses `[INST]`.
"""
from __future__ import annotations

from typing import Sequence

from .errors import MiniLlamaError

# Llama 3 (Meta 2024), the Llama 3 prompt format: header and end-of-turn tokens.
START_HEADER, END_HEADER, END_OF_TURN = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
# Mistral 7B Instruct (Jiang et al. 2023), tokenizer v1: instructions are wrapped as plain text.
MISTRAL_INST, MISTRAL_END_INST = "[INST]", "[/INST]"
MISTRAL_MARKERS = (MISTRAL_INST, MISTRAL_END_INST, "<s>", "</s>")  # and the text of BOS / EOS


def check_dialog(messages: Sequence[dict[str, str]], what: str) -> list[dict[str, str]]:
    """A copy of `messages` if it is [system], user, assistant, user, ... with str contents.

    Raises:
        MiniLlamaError: One line starting with `what` (the caller's name).
    """
    if isinstance(messages, (str, dict)) or not isinstance(messages, (list, tuple)) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        raise MiniLlamaError(f"{what}: messages must be a list of {{'role': str, 'content': str}} dicts")
    dialog = [{"role": m["role"], "content": m["content"]} for m in messages]
    turns = dialog[1:] if dialog and dialog[0]["role"] == "system" else dialog
    if not turns:
        raise MiniLlamaError(f"{what}: the dialog has no user message")
    if not (all(m["role"] == "user" for m in turns[::2]) and all(m["role"] == "assistant" for m in turns[1::2])):
        raise MiniLlamaError(f"{what}: roles must be [system], user, assistant, user, ... alternating")
    return dialog


def _refuse_markers(dialog: list[dict[str, str]], markers: Sequence[str], what: str) -> None:
    for m in dialog:
        for marker in markers:
            if marker in m["content"]:
                raise MiniLlamaError(f"{what}: a {m['role']} message contains the marker {marker!r}; markers are "
                                     "not allowed in messages")


def llama3_chat_ids(tokenizer, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of a dialog in Llama-3's header format (Meta-Llama-3-8B-Instruct's template).

    `BOS`, then for every message `<|start_header_id|> role <|end_header_id|> "\\n\\n" + content.strip()
    <|eot_id|>`; a dialog that ends with a user message is followed by the assistant header (the prompt
    the model answers, `add_generation_prompt=True`), one that ends with an answer is a training example.

    Args:
        tokenizer: A `BPETokenizer` whose special tokens include the three header tokens.
        messages: [system], user, assistant, user, ... dicts.
    """
    dialog = check_dialog(messages, "llama3 chat format")
    specials = getattr(tokenizer, "special_ids", {})
    missing = [t for t in (START_HEADER, END_HEADER, END_OF_TURN) if t not in specials]
    if missing:
        raise MiniLlamaError(f"{getattr(tokenizer, 'path', 'tokenizer')}: no special token {missing[0]} (the llama3 "
                             "chat format needs a Llama-3 tokenizer.json); use --template model for the model's own "
                             "format")
    _refuse_markers(dialog, list(specials), "llama3 chat format")
    start, end, eot = (specials[t] for t in (START_HEADER, END_HEADER, END_OF_TURN))

    def header(role: str) -> list[int]:
        return [start] + tokenizer.encode(role, bos=False, eos=False) + [end]

    ids = [tokenizer.bos_id]
    for m in dialog:
        ids += header(m["role"]) + tokenizer.encode("\n\n" + m["content"].strip(), bos=False, eos=False) + [eot]
    if dialog[-1]["role"] == "user":
        ids += header("assistant") + tokenizer.encode("\n\n", bos=False, eos=False)
    return ids


def mistral_chat_ids(tokenizer, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of a dialog in Mistral's `[INST]` format (tokenizer v1: Mistral-7B-Instruct-v0.1 / v0.2,
    Mixtral-8x7B-Instruct-v0.1).

    `BOS`, then each exchange `encode("[INST] " + question + " [/INST] " + answer) EOS` and a final
    question `encode("[INST] " + question + " [/INST]")`; a system prompt goes before the first question
    (`system + "\n\n" + question`). SentencePiece's dummy prefix supplies the space the template writes
    before `[INST]`. Each text between BOS/EOS is encoded whole, as the template's string is, so an empty
    answer still leaves its space; otherwise this equals mistral-common's message-by-message encoding.
    Contents are not stripped (the template does not strip them).

    Args:
        tokenizer: A SentencePiece `Tokenizer` (Mistral's tokenizer.model).
        messages: [system], user, assistant, user, ... dicts.
    """
    if getattr(tokenizer, "chat_format", None) != "llama2-chat" or tokenizer.sp.id_to_piece(tokenizer.bos_id) != "<s>":
        raise MiniLlamaError(f"template mistral: {getattr(tokenizer, 'path', 'the tokenizer')} is not a SentencePiece "
                             "tokenizer.model with <s> and </s> (Mistral v0.1-v0.2's); use --template model for "
                             "the model's own format")
    dialog = check_dialog(messages, "mistral chat format")
    _refuse_markers(dialog, MISTRAL_MARKERS, "mistral chat format")
    system = dialog.pop(0)["content"] if dialog[0]["role"] == "system" else None
    ids = [tokenizer.bos_id]
    for i in range(0, len(dialog), 2):
        question = f"{system}\n\n{dialog[i]['content']}" if i == 0 and system is not None else dialog[i]["content"]
        text = f"{MISTRAL_INST} {question} {MISTRAL_END_INST}"
        if i + 1 < len(dialog):  # answered: the answer follows in the same text, then EOS
            ids += tokenizer.encode(f"{text} {dialog[i + 1]['content']}", bos=False, eos=True)
        else:
            ids += tokenizer.encode(text, bos=False, eos=False)
    return ids
