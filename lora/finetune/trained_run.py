"""A finished training run folder (the layout `run_folder.py` writes), read by the generation stage and chat.

The folder holds `DONE`, `config.json` (the resolved training settings, with the dataset's sha256),
`split.json` (the held-out `val_ids` and the shared instruction) and `adapter/` (the best LoRA
adapter). `TrainRun` checks that layout, finds the base weights and the dataset the run used (even
when the run folder was moved), and loads the tokenizer, the base model and the adapter on demand.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from minillama import Llama, load_tokenizer
from minillama.gguf import is_gguf
from minillama.templates import prompt_ids
from plumbing.files import sha256_file

from lora.adapter_io import load_adapter
from lora.finetune.config import TrainError
from lora.finetune.records import load_records, resolve_dataset


@dataclass
class TrainRun:
    """A finished training run folder (`scripts/train.py`'s layout), as the generation stage needs it."""

    path: Path
    config: dict
    split: dict

    @classmethod
    def open(cls, path: str | Path) -> "TrainRun":
        """Check that `path` is a finished run (`DONE`, `config.json`, `split.json`, `adapter/`)."""
        path = Path(path)
        if not (path / "DONE").is_file():
            raise TrainError(f"{path}: not a finished training run (no DONE file); train it first "
                             f"or resume it with scripts/train.py --out {path} --resume")
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            split = json.loads((path / "split.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise TrainError(f"{path}: unreadable config.json or split.json ({e})") from None
        if not (path / "adapter" / "adapter_config.json").is_file():
            raise TrainError(f"{path / 'adapter'}: no adapter_config.json (best adapter missing)")
        if not split.get("val_ids"):
            raise TrainError(f"{path / 'split.json'}: no held-out ids (val_ids is empty)")
        return cls(path, config, split)

    @property
    def template(self) -> str:
        return self.config.get("template", "alpaca")

    @property
    def base_model(self) -> str:
        """The base weights: a local folder (the demo's, inside the run) or a Hub id."""
        return resolve_base(self.path, self.config)

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def adapter_sha256(self) -> str:
        return sha256_file(self.adapter_dir / "adapter_model.safetensors")

    @property
    def split_seed(self):
        return self.split.get("seed")

    @property
    def dataset_path(self) -> Path:
        return resolve_data(self.path, self.config)

    @property
    def dataset_sha256(self) -> str:
        return self.config.get("resolved", {}).get("data_sha256") or self.config.get("data_sha256", "")

    def held_out_records(self, limit: int | None = None) -> dict[str, dict]:
        """{id: record} of `split.json`'s val_ids, from the dataset file verified by its sha256."""
        path = self.dataset_path
        got = sha256_file(path)
        if self.dataset_sha256 and got != self.dataset_sha256:
            raise TrainError(f"{path}: sha256 {got[:12]}... differs from {self.dataset_sha256[:12]}... "
                             f"in {self.path / 'config.json'}: the dataset changed since training")
        records, _report = load_records(path, on_bad_record="skip")
        ids = [str(i) for i in self.split["val_ids"]]
        missing = [i for i in ids if i not in records]
        if missing:
            raise TrainError(f"{path}: held-out ids {', '.join(missing[:5])} are not valid records")
        ids = ids[:limit] if limit else ids
        return {i: records[i] for i in ids}

    def load_tokenizer(self):
        return load_tokenizer(self.base_model)  # a folder, a Hub id or a .gguf file

    @property
    def instruction(self) -> str:
        """The instruction the training records shared (what a chat with the model is asked under)."""
        return self.split.get("instruction", "")

    def prompt_ids(self, record: dict, tokenizer) -> list[int]:
        """The prompt exactly as training formatted it (same template, BOS, no response)."""
        return prompt_ids(record, tokenizer, self.template)

    @property
    def quantize(self) -> str | None:
        """"nf4" when the run trained on a 4-bit base (QLoRA): the adapter is evaluated on the same base."""
        q = self.config.get("quantize", "none")
        return None if q == "none" else q

    def load_base_model(self, dtype: str, device: str):
        model = Llama.from_pretrained(self.base_model, dtype=getattr(torch, dtype), device=device,
                                      quantize=self.quantize)
        return model.eval()

    def apply_adapter(self, model) -> None:
        load_adapter(model, self.adapter_dir)
        model.eval()


def resolve_base(run_dir: Path, config: dict) -> str:
    """The base model of a run: the path train.py resolved (`<run>/base` for the demo), or a Hub id."""
    base = str(config.get("resolved", {}).get("base_path") or config.get("base", ""))
    if base == "demo":
        return str(run_dir / "base")
    if base and (Path(base).expanduser().is_dir() or is_gguf(Path(base).expanduser())):
        return str(Path(base).expanduser())
    if config.get("base") == "demo":  # the run folder was moved: its base moved with it
        return str(run_dir / "base")
    return base


def resolve_data(run_dir: Path, config: dict) -> Path:
    """The dataset file a run trained on (its sha256 is checked by the caller)."""
    if config.get("data") == "demo":  # the demo writes its data into the run folder
        return run_dir / "demo_data.json"
    path = config.get("resolved", {}).get("data_path") or config.get("data", "")
    if path and Path(path).expanduser().is_file():
        return Path(path).expanduser()
    return resolve_dataset(config.get("data", ""))
