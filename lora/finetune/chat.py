"""Chatting with what was trained: the `minillama.sessions` resolver for adapters and training run folders.

`python -m minillama generate` accepts, as `--model`, a base model or a training run folder
(`scripts/train.py --out`), and, as `--adapter`, a PEFT adapter folder or a run folder. The model package
knows neither format; it asks the resolvers registered under the entry-point group `minillama.sessions`
(pyproject.toml), and this is the project's: a run folder supplies its base (`base/` for the demo, else
the base it trained from), its best adapter (`adapter/`), the template it was trained with and the
instruction its records shared, so a fine-tuned model is asked exactly the way it learnt to answer.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from minillama.chat import Session
from minillama.errors import MiniLlamaError
from minillama.gguf import is_gguf
from minillama.hub import is_hub_id

from lora.adapter_io import load_adapter
from lora.base_check import base_problem
from lora.finetune.trained_run import resolve_base


def is_run_folder(path: Path) -> bool:
    """A `scripts/train.py` run folder: `config.json` (no model weights), and `adapter/`, checkpoints or a split."""
    if not (path / "config.json").is_file() or (path / "model.safetensors").is_file():
        return False
    return (path / "adapter").is_dir() or (path / "checkpoints").is_dir() or (path / "split.json").is_file()


def _is_training_config(path: Path) -> bool:
    """A `config.json` that `scripts/train.py` wrote (a TrainConfig), not a model's."""
    try:
        d = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(d, dict) and "lora_r" in d and "model_type" not in d


def _read_run(run: Path) -> tuple[dict, dict]:
    try:
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        split = json.loads((run / "split.json").read_text(encoding="utf-8")) if (run / "split.json").is_file() else {}
    except (OSError, ValueError) as e:
        raise MiniLlamaError(f"{run}: unreadable config.json or split.json of the training run ({e})") from None
    if not isinstance(config, dict) or not isinstance(split, dict):
        raise MiniLlamaError(f"{run}: config.json or split.json of the training run is not a JSON object")
    return config, split


def _run_base(run: Path, config: dict) -> str:
    """The base model a run trained from, checked to be there (a folder or a Hub id)."""
    base = resolve_base(run, config)
    if base and (Path(base).expanduser().is_dir() or is_gguf(Path(base).expanduser()) or is_hub_id(base)):
        return base
    raise MiniLlamaError(f"{run}: a training run folder, but its base model ({base or 'unknown'}) is not there; "
                         f"pass the base with --model BASE and the run with --adapter {run}")


def chat_session(model: str, adapter: str | None, template: str | None, chat: bool,
                 quantize: str | None) -> Session | None:
    """The session for a run folder or an adapter (the `minillama.sessions` entry point); None for a plain model.

    Args: those of `minillama.chat.resolve_session`, already checked there.
    """
    run = None
    base = model
    model_path = Path(model).expanduser()
    if model_path.is_dir() and is_run_folder(model_path):
        run = model_path
        base = _run_base(run, _read_run(run)[0])
    elif model_path.is_dir() and _is_training_config(model_path):
        raise MiniLlamaError(f"{model_path}: a training run folder that holds neither an adapter nor a checkpoint "
                             f"yet; train it (or resume it: scripts/train.py --resume --out {model_path}) first")
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
    if adapter_dir is None:
        return None
    if not (adapter_dir / "adapter_config.json").is_file():
        raise MiniLlamaError(f"{adapter_dir}: no adapter_config.json; the run has not saved an adapter yet "
                             "(train it further or resume it)")
    config, split = _read_run(run) if run is not None else ({}, {})
    trained = config.get("template")
    if template and trained and template != trained:
        print(f"warning: --template {template}: the run {run} was trained with the {trained} template; answers "
              "in another format are usually poor", file=sys.stderr)
    chosen = template or trained or ("llama2-chat" if chat else "alpaca")
    where = f"training run {run}" if run is not None else "the command line"
    note = (f"base {base}; adapter {adapter_dir}; template {chosen}"
            + (" (--template)" if template else f" (from {where})" if run is not None else " (default)"))
    q = quantize if quantize is not None else config.get("quantize", "none")
    q = None if q == "none" else q
    return Session(base=base, template=chosen, instruction=split.get("instruction", ""),
                   note=note + (f"; base in {q}" if q else ""), quantize=q, adapter=adapter_dir,
                   apply_adapter=lambda m: load_adapter(m, adapter_dir),
                   check_base=lambda base_dir: base_problem(adapter_dir, base, base_dir))
