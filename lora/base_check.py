"""Which base an adapter was trained on, and the check that it is applied to that base.

LoRA's A and B fit any base whose adapted projections have the same shapes: an adapter trained on a Llama-3
loads into a Mistral of the same width without a shape error, and answers nonsense. PEFT records only the
base's name (`base_model_name_or_path` in adapter_config.json), a path or a Hub id that may be spelt
differently for the same model. So training also writes, beside the adapter, a *fingerprint* of the base
(`base_fingerprint.json`; PEFT ignores files it does not know):

    config_sha256   sha256 of the base's config.json as minillama reads it (every LlamaConfig field but the
                    storage dtype), so a bf16 and a float32 copy of one base agree
    weights_sha256  sha256 of the sorted "name [shape]" lines of its safetensors headers (not the values:
                    reading 13 GB to save an adapter is too slow; two fine-tunes of one architecture agree)
    summary         model_type, layers, hidden size and vocabulary, for the message

`base_problem` compares an adapter with the base it is about to be applied to: by fingerprint where the
adapter has one, else by name (the same folder or Hub id), else by the fingerprint of the recorded base
folder if it is still there. Where nothing can be told (an adapter from elsewhere naming a Hub id) it says
nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from minillama.config import LlamaConfig
from minillama.errors import MiniLlamaError
from minillama.hub import is_hub_id
from minillama.load import weight_index
from plumbing.durable import write_text_atomic

FINGERPRINT_NAME = "base_fingerprint.json"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def base_fingerprint(model_dir: Path) -> dict:
    """The fingerprint of the base model in the local folder `model_dir` (config.json and weight headers only)."""
    if model_dir.is_file():  # a llama.cpp .gguf file: the config and the tensor shapes in its header
        from minillama.gguf import hf_index, llama_config, read_gguf

        gguf = read_gguf(model_dir)
        config, shapes = llama_config(gguf), {name: t.shape for name, t in hf_index(gguf).items()}
    else:
        config = LlamaConfig.from_file(model_dir / "config.json")
        shapes = {name: info.shape for name, info in weight_index(model_dir).items()}
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k != "torch_dtype"}
    weights = sorted(f"{name} {list(shape)}" for name, shape in shapes.items())
    return {"config_sha256": _sha256(json.dumps(fields, sort_keys=True, default=str)),
            "weights_sha256": _sha256("\n".join(weights)),
            "summary": f"{config.model_type}, {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
                       f"vocab {config.vocab_size}"}


def write_fingerprint(adapter_dir: Path, fingerprint: dict) -> None:
    """Write `base_fingerprint.json` into the adapter folder (whole or not at all)."""
    write_text_atomic(adapter_dir / FINGERPRINT_NAME, json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")


def recorded_base(adapter_dir: Path) -> tuple[str | None, dict | None]:
    """(base_model_name_or_path, fingerprint) the adapter records; None for what it does not.

    The fingerprint is `base_fingerprint.json`, else the training run's (`config.json` of the run folder
    holding the adapter, `resolved.base_fingerprint`)."""
    def read(path: Path) -> dict | None:
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return d if isinstance(d, dict) else None

    name = (read(adapter_dir / "adapter_config.json") or {}).get("base_model_name_or_path") or None
    fingerprint = read(adapter_dir / FINGERPRINT_NAME)
    if fingerprint is None:
        resolved = (read(adapter_dir.parent / "config.json") or {}).get("resolved")
        fingerprint = resolved.get("base_fingerprint") if isinstance(resolved, dict) else None
    ok = isinstance(fingerprint, dict) and {"config_sha256", "weights_sha256"} <= fingerprint.keys()
    return (str(name) if name else None), (fingerprint if ok else None)


def _same_place(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.is_dir() and pb.is_dir():
        return pa.resolve() == pb.resolve()
    return a == b


def base_problem(adapter_dir: Path, base: str, base_dir: Path) -> str | None:
    """One line ("trained on the base X (...), not on Y (...); ...") when the adapter in `adapter_dir` was trained
    on another base than `base` (whose local folder is `base_dir`); None when it was trained on it or that
    cannot be told."""
    name, recorded = recorded_base(adapter_dir)
    if recorded is None and name is None:
        return None
    if recorded is None:
        if _same_place(name, base):
            return None
        if Path(name).expanduser().is_dir():  # an older adapter: look at the base it names, if still there
            try:
                recorded = base_fingerprint(Path(name).expanduser())
            except MiniLlamaError:
                return None
        elif is_hub_id(name) and is_hub_id(base) and not Path(base).expanduser().exists():
            return f"trained on the base {name}, not on {base}; an adapter on another base answers nonsense"
        else:
            return None
    mine = base_fingerprint(base_dir)
    if (mine["config_sha256"], mine["weights_sha256"]) == (recorded["config_sha256"], recorded["weights_sha256"]):
        return None
    was = f" ({recorded['summary']})" if recorded.get("summary") else ""
    return (f"trained on the base {name or 'recorded in ' + FINGERPRINT_NAME}{was}, not on {base} ({mine['summary']}); "
            "an adapter on another base answers nonsense")
