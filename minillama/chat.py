"""Talking to a model: which base, which LoRA adapter, which prompt template, and a conversation's prompt.

`python -m minillama generate` accepts, as `--model`, a base model (folder or Hub id) or a training run
folder (`scripts/train.py --out`), and, as `--adapter`, a PEFT adapter folder or a run folder. A run
folder supplies its base (`base/` for the demo, else the base it trained from), its best adapter
(`adapter/`), the template it was trained with and the instruction its records shared, so a fine-tuned
model is asked exactly the way it learnt to answer. `--template` overrides the template.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import MiniLlamaError
from .hub import is_hub_id
from .templates import TEMPLATES, prompt_ids


@dataclass(frozen=True)
class Session:
    """What `generate` loads and how it formats prompts.

    Attributes:
        base: the base model, a local folder or a Hub id.
        adapter: the LoRA adapter folder, or None.
        template: one of `minillama.templates.TEMPLATES`.
        instruction: the instruction of the training records (alpaca's "### Instruction"; Llama-2's system
            prompt), "" if unknown.
        note: one line saying where these came from (printed on stderr).
        quantize: "nf4" to load the base in 4 bits (a run trained with QLoRA is answered on that base).
    """

    base: str
    adapter: Path | None
    template: str
    instruction: str
    note: str
    quantize: str | None = None


def is_run_folder(path: Path) -> bool:
    """A `scripts/train.py` run folder: `config.json` with a resolved base, and `adapter/` or checkpoints."""
    if not (path / "config.json").is_file() or (path / "model.safetensors").is_file():
        return False
    return (path / "adapter").is_dir() or (path / "checkpoints").is_dir() or (path / "split.json").is_file()


def _read_run(run: Path) -> tuple[dict, dict]:
    try:
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        split = json.loads((run / "split.json").read_text(encoding="utf-8")) if (run / "split.json").is_file() else {}
    except (OSError, ValueError) as e:
        raise MiniLlamaError(f"{run}: unreadable config.json or split.json of the training run ({e})") from None
    return config, split


def _run_base(run: Path, config: dict) -> str:
    """The base model a run trained from: `run/base` (the demo's), or the folder / Hub id it recorded."""
    if (run / "base" / "config.json").is_file():
        return str(run / "base")
    base = str(config.get("resolved", {}).get("base_path") or config.get("base", ""))
    if base and base != "demo" and (Path(base).expanduser().is_dir() or is_hub_id(base)):
        return base
    raise MiniLlamaError(f"{run}: a training run folder, but its base model ({base or 'unknown'}) is not there; "
                         f"pass the base with --model BASE and the run with --adapter {run}")


def resolve_session(model: str, adapter: str | None = None, template: str | None = None,
                    chat: bool = False, quantize: str | None = None) -> Session:
    """Work out base, adapter, template and instruction from the command line's values.

    Args:
        model: a model folder, a Hub id, or a training run folder.
        adapter: a PEFT adapter folder or a training run folder (its `adapter/`); None: the run's, if any.
        template: overrides the template (None: the run's, else "llama2-chat" with `chat`, else "none").
        chat: the older `--chat` flag: the Llama-2 chat template.
        quantize: "nf4" or "none" overrides how the base is loaded (None: the run's, else as stored).
    """
    if template is not None and template not in TEMPLATES:
        raise MiniLlamaError(f"--template: {template!r} is not one of {', '.join(TEMPLATES)}")
    run = None
    base = model
    model_path = Path(model).expanduser()
    if model_path.is_dir() and is_run_folder(model_path):
        run = model_path
        base = _run_base(run, _read_run(run)[0])
    adapter_dir = None
    if adapter is not None:
        a = Path(adapter).expanduser()
        if a.is_dir() and is_run_folder(a):
            run, adapter_dir = a, a / "adapter"
        elif (a / "adapter_config.json").is_file():
            adapter_dir = a
            if is_run_folder(a.parent):  # run/adapter or run/adapter_last: the run knows the template
                run = a.parent
        else:
            raise MiniLlamaError(f"--adapter {a}: not a LoRA adapter folder (no adapter_config.json) nor a "
                                 "training run folder")
    elif run is not None:
        adapter_dir = run / "adapter"
    if adapter_dir is not None and not (adapter_dir / "adapter_config.json").is_file():
        raise MiniLlamaError(f"{adapter_dir}: no adapter_config.json; the run has not saved an adapter yet "
                             "(train it further or resume it)")
    config, split = _read_run(run) if run is not None else ({}, {})
    chosen = template or config.get("template") or ("llama2-chat" if chat else ("alpaca" if adapter_dir else "none"))
    where = f"training run {run}" if run is not None else "the command line"
    note = (f"base {base}; adapter {adapter_dir or 'none'}; template {chosen}"
            + (" (--template)" if template else f" (from {where})" if run is not None else " (default)"))
    q = quantize if quantize is not None else config.get("quantize", "none")
    if q not in ("none", "nf4"):
        raise MiniLlamaError(f"--quantize: {q!r} is not none or nf4")
    q = None if q == "none" else q
    return Session(base=base, adapter=adapter_dir, template=chosen, instruction=split.get("instruction", ""),
                   note=note + (f"; base in {q}" if q else ""), quantize=q)


def conversation_ids(session: Session, tokenizer, history: list[tuple[str, str]], message: str,
                     system: str | None = None) -> list[int]:
    """Token ids of the prompt for `message` after the (user, answer) turns of `history`.

    llama2-chat keeps the turns as Meta's format does; alpaca and none put the earlier turns into the
    input text ("Patient: ... / Doctor: ..."), since those formats have a single turn.
    """
    instruction = system if system is not None else session.instruction
    if session.template == "llama2-chat":
        messages = [{"role": "system", "content": instruction}] if instruction else []
        for user, answer in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        return tokenizer.encode_chat(messages + [{"role": "user", "content": message}])
    text = "".join(f"Patient: {u}\nDoctor: {a}\n" for u, a in history)
    text = f"{text}Patient: {message}" if history else message
    return prompt_ids({"instruction": instruction, "input": text}, tokenizer, session.template)
