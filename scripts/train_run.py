"""A finished training run folder (`scripts/train.py`'s layout), read for the generation stage.

The folder holds `DONE`, `config.json` (the resolved training settings, with the dataset's sha256),
`split.json` (the held-out `val_ids`) and `adapter/` (the best LoRA adapter). `TrainRun` checks that
layout, finds the base weights and the dataset the run used (even when the run folder was moved),
and loads the tokenizer, the base model and the adapter on demand. `check_model_access` fails in one
line, before any work, when a Hub base model's files cannot be had on this machine.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scripts.pipeline_config import PipelineError

HF_ACCESS = ("request access at https://huggingface.co/{repo} (Meta's licence form), then run "
             "`huggingface-cli login` or set HF_TOKEN on a machine that can reach huggingface.co, "
             "or pass a local copy with --config (train_args: [\"--base\", \"DIR\"])")


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
            raise PipelineError(f"{path}: not a finished training run (no DONE file); train it first "
                                f"or resume it with scripts/train.py --out {path} --resume")
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            split = json.loads((path / "split.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise PipelineError(f"{path}: unreadable config.json or split.json ({e})") from None
        if not (path / "adapter" / "adapter_config.json").is_file():
            raise PipelineError(f"{path / 'adapter'}: no adapter_config.json (best adapter missing)")
        if not split.get("val_ids"):
            raise PipelineError(f"{path / 'split.json'}: no held-out ids (val_ids is empty)")
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
        from scripts.manifest import sha256_file
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
        from scripts.data import load_records
        from scripts.manifest import sha256_file

        path = self.dataset_path
        got = sha256_file(path)
        if self.dataset_sha256 and got != self.dataset_sha256:
            raise PipelineError(f"{path}: sha256 {got[:12]}... differs from {self.dataset_sha256[:12]}... "
                                f"in {self.path / 'config.json'}: the dataset changed since training")
        records, _report = load_records(path, on_bad_record="skip")
        ids = [str(i) for i in self.split["val_ids"]]
        missing = [i for i in ids if i not in records]
        if missing:
            raise PipelineError(f"{path}: held-out ids {', '.join(missing[:5])} are not valid records")
        ids = ids[:limit] if limit else ids
        return {i: records[i] for i in ids}

    def load_tokenizer(self):
        from minillama import load_tokenizer
        return load_tokenizer(self.base_model)

    def prompt_ids(self, record: dict, tokenizer) -> list[int]:
        """The prompt exactly as training formatted it (same template, BOS, no response)."""
        from scripts.data import prompt_ids
        return prompt_ids(record, tokenizer, self.template)

    def load_base_model(self, dtype: str, device: str):
        import torch

        from minillama import Llama
        model = Llama.from_pretrained(self.base_model, dtype=getattr(torch, dtype), device=device)
        return model.eval()

    def apply_adapter(self, model) -> None:
        import lora
        lora.load_adapter(model, self.adapter_dir)
        model.eval()


def resolve_base(run_dir: Path, config: dict) -> str:
    """The base model of a run: the path train.py resolved (`<run>/base` for the demo), or a Hub id."""
    base = str(config.get("resolved", {}).get("base_path") or config.get("base", ""))
    if base == "demo":
        return str(run_dir / "base")
    if base and Path(base).expanduser().is_dir():
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
    from scripts.data import resolve_dataset
    return resolve_dataset(config.get("data", ""))


def hub_problem(repo_id: str, timeout: float = 10.0) -> tuple[str, str] | None:
    """Why Hub model `repo_id`'s config.json cannot be had here, or None if it can (cached or reachable).

    One HEAD request with a short timeout and no retries (hf_hub_download retries for ~25 s offline).

    Returns:
        (kind, detail): kind is "offline" (HF_HUB_OFFLINE set, no cached copy), "network" (huggingface.co
        unreachable), "gated" (401/403: licence not accepted or no token), "missing" (no such repo) or
        "other"; detail is the underlying error in a few words.
    """
    from huggingface_hub import constants, errors, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return None
    if constants.HF_HUB_OFFLINE:
        return "offline", "HF_HUB_OFFLINE is set and there is no cached copy"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=timeout)
    except errors.GatedRepoError:
        return "gated", "gated repo"
    except errors.RepositoryNotFoundError:
        return "missing", "no such repo, or a private one"
    except errors.HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        return ("gated" if status in (401, 403) else "other"), f"HTTP {status}"
    except Exception as e:  # httpx2's ConnectError / timeouts carry no common public base to import
        names = {c.__name__ for c in type(e).__mro__}
        if names & {"TransportError", "ConnectionError", "TimeoutError"}:
            return "network", " ".join(str(e).split()) or type(e).__name__
        return "other", f"{type(e).__name__}: {' '.join(str(e).split())}"
    return None


def hub_access_message(repo_id: str, kind: str, detail: str, licence: str, local: str) -> str:
    """The one-line reason for `hub_problem`'s (kind, detail); `licence` says how to get access to a
    gated model, `local` how to pass a local copy instead."""
    if kind == "network":
        return (f"{repo_id}: cannot reach huggingface.co ({detail}); check the network or set HF_HUB_OFFLINE=1 "
                f"with a cached copy, or {local}")
    if kind == "missing":
        return f"{repo_id}: no such model on huggingface.co ({detail}); check the name, or {local}"
    if kind == "offline":
        return f"{repo_id}: not in the local Hugging Face cache ({detail}); unset HF_HUB_OFFLINE to download, " \
               + licence
    return f"{repo_id}: cannot download the base model ({detail}); " + licence


def check_model_access(model: str | None) -> None:
    """Fail in one line, before hours of work, when a Hub model's files cannot be had here."""
    if not model or model == "demo" or Path(model).expanduser().exists() or "/" not in model:
        return
    problem = hub_problem(model)
    if problem:
        local = 'pass a local copy with --config (train_args: ["--base", "DIR"])'
        raise PipelineError(hub_access_message(model, *problem, HF_ACCESS.format(repo=model), local))
