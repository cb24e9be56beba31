"""Prompt templates: how an (instruction, input) pair becomes the token ids a model continues.

The same function formats training prompts (`lora.finetune.data`), the evaluation prompts of the
generation stage and the prompts of `python -m minillama generate`, so a fine-tuned model is always
asked in exactly the format it was trained on.

- `alpaca`: alpaca-lora's `templates/alpaca.json`, the wording of ChatDoctor's `train_lora.py`
  `generate_prompt` (without the indentation its triple-quoted f-string leaves in the text).
- `llama2-chat`: Meta's chat format through `Tokenizer.encode_chat`; the instruction is the system
  prompt (GenMedGPT's instruction is a role description, which is what Llama-2's system prompt is for).
- `none`: the input text as it is, after BOS (for base models and free text).
"""
from __future__ import annotations

from .errors import MiniLlamaError

TEMPLATES = ("alpaca", "llama2-chat", "none")

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
    """Token ids of the prompt (BOS included) that precedes the response.

    Args:
        record: {"instruction": str, "input": str} (alpaca-style; either may be empty, not both).
        tokenizer: a `minillama.Tokenizer`.
        template: one of `TEMPLATES`.
    """
    instruction, user_input = record.get("instruction", "").strip(), record.get("input", "").strip()
    if template == "alpaca":
        fmt = ALPACA_PROMPT if user_input else ALPACA_PROMPT_NO_INPUT
        return tokenizer.encode(fmt.format(instruction=instruction, input=user_input), bos=True, eos=False)
    if template == "llama2-chat":
        messages = [{"role": "system", "content": instruction}] if instruction and user_input else []
        messages.append({"role": "user", "content": user_input or instruction})
        return tokenizer.encode_chat(messages)
    if template == "none":
        return tokenizer.encode(user_input or instruction, bos=True, eos=False)
    raise MiniLlamaError(f"template: unknown template {template!r} (choose from {', '.join(TEMPLATES)})")

