"""Talking to a model: what `python -m minillama generate` loads (a *session*) and a conversation's prompt.

`--model` names a base model (a folder or a Hub id), `--adapter` an optional adapter. The model package
knows no adapter format and no training run: the packages that build on it extend `resolve_session`
through the entry-point group `minillama.sessions` (declared in pyproject.toml). The project's `lora`
package registers `lora.finetune.chat:chat_session` there, so that a PEFT adapter folder, or a
training run folder as `--model` or `--adapter`, supplies its base, its best adapter, the template it was
trained with and its instruction: a fine-tuned model is asked exactly the way it learnt to answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from .errors import MiniLlamaError
from .templates import CHAT_TEMPLATES, TEMPLATES, chat_ids, prompt_ids

SESSION_GROUP = "minillama.sessions"  # entry points: resolver(model, adapter, template, chat, quantize) -> Session | None


@dataclass(frozen=True)
class Session:
    """What `generate` loads and how it formats prompts.

    Attributes:
        base: the base model, a local folder or a Hub id.
        template: one of `minillama.templates.TEMPLATES`.
        instruction: the instruction of the training records (alpaca's "### Instruction"; Llama-2's system
            prompt), "" if unknown.
        note: one line saying where these came from (printed on stderr).
        quantize: "nf4" to load the base in 4 bits (a run trained with QLoRA is answered on that base).
        adapter: the adapter folder, or None.
        apply_adapter: loads the adapter into the base model (given by the resolver that found it).
        check_base: given the base's local folder, one line when the adapter was trained on another base
            (None when it was not, or that cannot be told); given by the resolver that found the adapter.
    """

    base: str
    template: str
    instruction: str = ""
    note: str = ""
    quantize: str | None = None
    adapter: Path | None = None
    apply_adapter: Callable[[object], object] | None = None
    check_base: Callable[[Path], str | None] | None = None


def session_resolvers() -> list[Callable]:
    """The resolvers registered under `minillama.sessions` by installed packages, by entry-point name."""
    found = {ep.value: ep for ep in entry_points(group=SESSION_GROUP)}
    return [ep.load() for ep in sorted(found.values(), key=lambda ep: ep.name)]


def resolve_session(model: str, adapter: str | None = None, template: str | None = None,
                    chat: bool = False, quantize: str | None = None) -> Session:
    """Work out base, adapter, template and instruction from the command line's values.

    Args:
        model: a model folder or a Hub id (or, with a resolver installed, a training run folder).
        adapter: an adapter folder (needs a resolver); None: the run's, if `model` is a run.
        template: overrides the template (None: the resolver's, else "llama2-chat" with `chat`, else "none").
        chat: the older `--chat` flag: the Llama-2 chat template.
        quantize: "nf4" or "none" overrides how the base is loaded (None: the run's, else as stored).
    """
    if template is not None and template not in TEMPLATES:
        raise MiniLlamaError(f"--template: {template!r} is not one of {', '.join(TEMPLATES)}")
    if quantize not in (None, "none", "nf4"):
        raise MiniLlamaError(f"--quantize: {quantize!r} is not none or nf4")
    for resolver in session_resolvers():
        session = resolver(model, adapter, template, chat, quantize)
        if session is not None:
            return session
    if adapter is not None:
        raise MiniLlamaError(f"--adapter {adapter}: no installed package loads adapters (this project's `lora` "
                             f"registers one under the entry-point group {SESSION_GROUP}: pip install -e .)")
    chosen = template or ("llama2-chat" if chat else "none")
    q = None if quantize in (None, "none") else quantize
    how = " (--template)" if template else " (--chat)" if chat else " (default)"
    note = f"base {model}; adapter none; template {chosen}{how}"
    return Session(base=model, template=chosen, note=note + (f"; base in {q}" if q else ""), quantize=q)


def conversation_ids(session: Session, tokenizer, history: list[tuple[str, str]], message: str,
                     system: str | None = None) -> list[int]:
    """Token ids of the prompt for `message` after the (user, answer) turns of `history`.

    The chat templates (llama2-chat, llama3, mistral, model) keep the turns as their formats do; alpaca and none put
    the earlier turns into the input text ("Patient: ... / Doctor: ..."), since those formats have a single turn.
    """
    instruction = system if system is not None else session.instruction
    if session.template in CHAT_TEMPLATES:
        messages = [{"role": "system", "content": instruction}] if instruction else []
        for user, answer in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        return chat_ids(messages + [{"role": "user", "content": message}], tokenizer, session.template)
    text = "".join(f"Patient: {u}\nDoctor: {a}\n" for u, a in history)
    text = f"{text}Patient: {message}" if history else message
    return prompt_ids({"instruction": instruction, "input": text}, tokenizer, session.template)
