"""Prompt templates: how an (instruction, input) pair becomes the token ids a model continues.

The same function formats training prompts (`lora.finetune.data`), the evaluation prompts of the
generation stage and the prompts of `python -m minillama generate`, so a fine-tuned model is always
asked in exactly the format it was trained on.

- `alpaca`: alpaca-lora's `templates/alpaca.json`, the wording of ChatDoctor's `train_lora.py`
  `generate_prompt` (without the indentation its triple-quoted f-string leaves in the text).
- `llama2-chat`: Meta's chat format through `Tokenizer.encode_chat`; the instruction is the system
  prompt (GenMedGPT's instruction is a role description, which is what Llama-2's system prompt is for).
- `llama3`: Llama-3's header format (`chat_formats.llama3_chat_ids`, a `tokenizer.json` tokenizer);
  the instruction is the system message, as for llama2-chat.
- `mistral`: Mistral's `[INST]` format (`chat_formats.mistral_chat_ids`); the instruction is the system
  prompt, which Mistral writes before the first user message.
- `model`: the model's own chat template (`chat_template.py`: tokenizer_config.json's `chat_template`,
  rendered in a sandbox as transformers does); the instruction is the system message. Its answer span
  (what training learns) runs to the template's end-of-turn token included (`chat_template.answer_span`).
- `none`: the input text as it is, after BOS where the model's tokenizer adds one (for base models and
  free text).

alpaca and none add BOS where the model's own tokenizer does (`encode`'s default: Llama-2 and Llama-3
yes, SmolLM2 no), as alpaca-lora's `tokenizer(prompt)` does.
"""
from __future__ import annotations

from .chat_formats import END_OF_TURN, llama3_chat_ids, mistral_chat_ids
from .chat_template import answer_span, chat_template_ids, require_template
from .errors import MiniLlamaError

TEMPLATES = ("alpaca", "llama2-chat", "llama3", "mistral", "model", "none")
# Chat templates: the instruction becomes the system message, the input the user message.
CHAT_TEMPLATES = ("llama2-chat", "llama3", "mistral", "model")

ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def prompt_ids(record: dict, tokenizer, template: str) -> list[int]:
    """Token ids of the prompt (BOS included where the format has one) that precedes the response.

    Args:
        record: {"instruction": str, "input": str} (alpaca-style; either may be empty, not both).
        tokenizer: a `minillama.Tokenizer` (`BPETokenizer` for llama3; one with a chat_template for model).
        template: one of `TEMPLATES`.
    """
    instruction, user_input = record.get("instruction", "").strip(), record.get("input", "").strip()
    if template == "alpaca":
        fmt = ALPACA_PROMPT if user_input else ALPACA_PROMPT_NO_INPUT
        return tokenizer.encode(fmt.format(instruction=instruction, input=user_input), eos=False)
    if template in CHAT_TEMPLATES:
        return chat_ids(_messages(instruction, user_input), tokenizer, template)
    if template == "none":
        return tokenizer.encode(user_input or instruction, eos=False)
    raise MiniLlamaError(f"template: unknown template {template!r} (choose from {', '.join(TEMPLATES)})")


def _messages(instruction: str, user_input: str) -> list[dict[str, str]]:
    """The chat templates' dialog of a record: the instruction as system message, the input as user message."""
    messages = [{"role": "system", "content": instruction}] if instruction and user_input else []
    return messages + [{"role": "user", "content": user_input or instruction}]


def response_ids(record: dict, tokenizer, template: str) -> list[int]:
    """Token ids of the record's answer ("output", stripped) as training appends them to `prompt_ids`,
    without the closing `answer_end_id` (which the caller appends when it fits).

    For `model` these are the tokens the template's rendering adds after the prompt, up to its end-of-turn
    token excluded (`chat_template.answer_span`); for the others the answer encoded on its own.
    """
    answer = record["output"].strip()
    if template != "model":
        return tokenizer.encode(answer, bos=False, eos=False)
    instruction, user_input = record.get("instruction", "").strip(), record.get("input", "").strip()
    return answer_span(tokenizer, _messages(instruction, user_input), answer)[1][:-1]


def chat_ids(messages: list[dict[str, str]], tokenizer, template: str) -> list[int]:
    """Token ids of a dialog ([system], user, assistant, user, ...) in one of `CHAT_TEMPLATES` (a whole
    conversation, where `prompt_ids` formats one instruction and input).

    Raises:
        MiniLlamaError: Another template, a tokenizer that cannot write it (llama2-chat needs the
            SentencePiece `Tokenizer`, llama3 a `BPETokenizer` with Llama-3's header tokens, mistral a
            SentencePiece `Tokenizer` with `<s>`, model a tokenizer with a chat_template), or a bad dialog.
    """
    if template == "mistral":
        return mistral_chat_ids(tokenizer, messages)
    if template == "model":
        return chat_template_ids(tokenizer, messages)
    if template not in CHAT_TEMPLATES:
        raise MiniLlamaError(f"template: {template!r} is not a chat template ({', '.join(CHAT_TEMPLATES)})")
    own = getattr(tokenizer, "chat_format", "llama2-chat")  # Tokenizer: llama2-chat; BPETokenizer: llama3
    if own != template:
        kind = "SentencePiece tokenizer.model" if own == "llama2-chat" else "byte-level BPE tokenizer.json"
        raise MiniLlamaError(f"template {template}: {getattr(tokenizer, 'path', 'the tokenizer')} is a {kind}; "
                             "llama2-chat needs a SentencePiece tokenizer.model, llama3 a Llama-3 tokenizer.json; "
                             "use --template model for the model's own format")
    return llama3_chat_ids(tokenizer, messages) if template == "llama3" else tokenizer.llama2_chat_ids(messages)


def answer_end_id(tokenizer, template: str) -> int:
    """The id that closes an answer (a training target's last token) in `template`: `<|eot_id|>` for llama3,
    whose format ends every turn with it (a base Llama-3 tokenizer's EOS is `<|end_of_text|>`), for model
    the end-of-turn token the template writes after an answer (ChatML's `<|im_end|>`), the tokenizer's EOS
    for the others."""
    if template not in TEMPLATES:
        raise MiniLlamaError(f"template: unknown template {template!r} (choose from {', '.join(TEMPLATES)})")
    if template == "llama3":
        return getattr(tokenizer, "special_ids", {}).get(END_OF_TURN, tokenizer.eos_id)
    if template == "model":  # the end-of-turn token the template writes after an answer
        require_template(tokenizer)
        return answer_span(tokenizer, [{"role": "user", "content": "?"}], "!")[1][-1]
    return tokenizer.eos_id
