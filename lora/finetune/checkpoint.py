"""Resumable checkpoints: adapter, optimiser, every rank's RNG and the position in the data; no pickle.

A checkpoint is the folder `checkpoints/step_00000100/`:
    adapter/                 the LoRA weights at that step (PEFT format, `lora.save_adapter`)
    optimizer.safetensors    AdamW's per-parameter tensors, by parameter name (`state.{name}.exp_avg`, ...)
    optimizer.json           AdamW's param_groups and any non-tensor state
    rng.safetensors          each rank's torch CPU (and CUDA) generator state
    rng.json                 each rank's python `random` and numpy generator state
    state.json               step, best validation loss, world size, and the sha256 of every file above
                             (written last: a folder without it is incomplete)

Under FSDP2 the LoRA weights and the optimiser state are DTensor shards; they are gathered whole on
save, so a checkpoint looks the same whatever the sharding, and re-sharded on load.

Writing: everything goes into `.step_00000100.tmp/`, each file fsynced, then one rename makes it
`step_00000100/` and the folder is fsynced (`plumbing.durable.write_folder_atomic`), so a crash never
leaves a checkpoint that `--resume` would pick. Reading: `latest_intact` checks every file of every candidate (sha256, parse) and takes the
newest intact one, naming what was wrong with the others. The learning rate is a pure function of the
step (`schedule.lr_at`), so the scheduler's state is the step itself.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from minillama.safetensors_io import save_file  # a full disk as OSError, naming the file
from plumbing.durable import write_folder_atomic, write_json_atomic
from plumbing.files import sha256_file

import lora
from lora.finetune.config import RunFailed, TrainError

FILES = ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "optimizer.safetensors",
         "optimizer.json", "rng.safetensors", "rng.json")


def step_dirs(out: Path) -> list[Path]:
    """Checkpoint folders `checkpoints/step_N` (complete or not; temporary `.step_N.tmp` never), oldest first."""
    folder = out / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit())


def problem(path: Path, world_size: int | None = None) -> str | None:
    """Why checkpoint `path` cannot be resumed from, or None when every file is present and intact."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        hashes = state["sha256"]
        int(state["step"]), int(state["world_size"])
    except FileNotFoundError:
        return "no state.json (incomplete)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"state.json unreadable ({type(e).__name__})"
    for name in FILES:
        if not (path / name).is_file():
            return f"{name} missing"
        if sha256_file(path / name) != hashes.get(name):
            return f"{name} damaged (sha256 differs)"
    try:
        for name in ("optimizer.json", "rng.json", "adapter/adapter_config.json"):
            json.loads((path / name).read_text(encoding="utf-8"))
        for name in ("optimizer.safetensors", "rng.safetensors", "adapter/adapter_model.safetensors"):
            load_file(str(path / name))
    except (OSError, ValueError, SafetensorError) as e:
        return f"unreadable ({type(e).__name__})"
    if world_size is not None and state["world_size"] != world_size:
        return f"written by {state['world_size']} processes, resuming with {world_size}"
    return None


def latest_intact(out: Path, world_size: int | None = None) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that passes `problem`, and one note per newer one that did not."""
    notes = []
    for path in reversed(step_dirs(out)):
        why = problem(path, world_size)
        if why is None:
            return path, notes
        notes.append(f"{path}: {why}")
    return None, notes


def rng_state() -> dict:
    """This process's generator states (torch CPU/CUDA as tensors, python/numpy as JSON values)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _whole(t):
    """A DTensor shard gathered whole (a collective under FSDP), else the tensor itself."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """AdamW's state by parameter name: ({"state.{name}.{key}": whole tensor}, {non-tensor values}).

    Under FSDP every rank must call this (the shards are gathered).
    """
    names = {p: n for n, p in model.named_parameters()}
    tensors, extra = {}, {}
    for p, per_param in optimizer.state.items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"state.{names[p]}.{key}"] = _whole(value).detach().cpu().contiguous()
            else:
                extra[f"state.{names[p]}.{key}"] = value
    return tensors, extra


def save_checkpoint(out: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict,
                    rng_states: list[dict], adapter: dict, opt_state: tuple[dict, dict], base_name: str,
                    keep: int) -> Path:
    """Write checkpoint `step` (rank 0 only; the arguments were gathered from every rank), then prune.

    Args:
        rng_states: every rank's `rng_state()`, in rank order.
        adapter: `lora.adapter_state(model)`; opt_state: `optimizer_state(model, optimizer)`.
    Raises:
        RunFailed: the disk is full or unwritable (the earlier checkpoints are kept).
    """
    final = out / "checkpoints" / f"step_{step:08d}"

    def fill(tmp: Path) -> None:
        lora.save_adapter(model, tmp / "adapter", base_model_name_or_path=base_name, state=adapter)
        tensors, extra = opt_state
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items() if k != "params"}
                  for g in optimizer.state_dict()["param_groups"]]
        (tmp / "optimizer.json").write_text(json.dumps({"param_groups": groups, "extra": extra}, indent=1))
        rng_tensors = {}
        for r, s in enumerate(rng_states):
            rng_tensors[f"rank{r}.torch"] = s["torch"]
            rng_tensors.update({f"rank{r}.cuda.{i}": t for i, t in enumerate(s["cuda"])})
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        (tmp / "rng.json").write_text(json.dumps([{"python": s["python"], "numpy": s["numpy"],
                                                   "n_cuda": len(s["cuda"])} for s in rng_states]))
        write_json_atomic(tmp / "state.json", {**state, "step": step, "world_size": len(rng_states),
                                               "sha256": {name: sha256_file(tmp / name) for name in FILES}})

    try:  # built as `.step_N.tmp`, every file fsynced, then renamed: `--resume` never picks a half checkpoint
        write_folder_atomic(final, fill, replace=True)  # replaces an incomplete folder of the same step
    except OSError as e:
        raise RunFailed(f"{final.with_name('.' + final.name + '.tmp')}: cannot write checkpoint {step} "
                        f"({e.strerror or e}); free space and rerun with --resume") from None
    older = [p for p in step_dirs(out) if p != final]
    for p in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int) -> dict:
    """Restore the optimiser and this rank's RNG state from a checkpoint `problem` passed; returns state.json.

    The adapter weights are loaded separately (`lora.load_adapter`, before any FSDP sharding); a whole
    optimiser tensor is re-sharded like its parameter when the parameter is a DTensor.
    """
    state = json.loads((path / "state.json").read_text())
    params = dict(model.named_parameters())
    tensors = load_file(str(path / "optimizer.safetensors"))
    meta = json.loads((path / "optimizer.json").read_text())
    index = {id(p): i for i, p in enumerate(q for g in optimizer.param_groups for q in g["params"])}
    per_param: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["extra"].items()):
        name, field = key[len("state."):].rsplit(".", 1)
        if name not in params or id(params[name]) not in index:
            raise TrainError(f"{path}: optimizer state names {name!r}, which is not a trainable parameter")
        p = params[name]
        if torch.is_tensor(value) and hasattr(p, "device_mesh") and value.dim() > 0:
            from torch.distributed.tensor import distribute_tensor
            value = distribute_tensor(value.to(p.device), p.device_mesh, p.placements)
        per_param.setdefault(index[id(p)], {})[field] = value
    groups = optimizer.state_dict()["param_groups"]
    for g, saved in zip(groups, meta["param_groups"]):
        g.update({k: tuple(v) if k == "betas" else v for k, v in saved.items()})
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    rng_t = load_file(str(path / "rng.safetensors"))
    rng_j = json.loads((path / "rng.json").read_text())[rank]
    set_rng_state({"torch": rng_t[f"rank{rank}.torch"],
                   "cuda": [rng_t[f"rank{rank}.cuda.{i}"] for i in range(rng_j["n_cuda"])],
                   "python": rng_j["python"], "numpy": rng_j["numpy"]})
    return state
