"""Run-folder safety and resumable checkpoints (adapter, optimiser, RNG states, position), no pickle.

A checkpoint is the folder `checkpoints/step_00000100/`:
    adapter/                 the LoRA weights at that step (PEFT format, `lora.save_adapter`)
    optimizer.safetensors    AdamW's per-parameter tensors (`state.{i}.exp_avg`, ...)
    optimizer.json           AdamW's param_groups and any non-tensor state
    rng.safetensors          each rank's torch CPU (and CUDA) generator state
    rng.json                 each rank's python `random` and numpy generator state
    state.json               step, epoch, data position, best validation loss, world size (written last)
It is written under `step_... .tmp` and renamed when complete, so a crash never leaves a half
checkpoint that `--resume` would pick. The learning rate is a pure function of the step (train.py
`lr_at`), so the scheduler's state is the step itself.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import lora
from scripts.train_config import TrainError

# Everything a run writes into its folder; any of these present means the folder holds results.
RESULT_NAMES = ("config.json", "split.json", "data_report.json", "metrics.jsonl", "loss.png", "DONE",
                "adapter", "adapter_last", "checkpoints", "base", "demo_data.json", "demo_eval.json")


def prepare_run_dir(out: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite results; with `force`, delete this project's results (and nothing else)."""
    present = [n for n in RESULT_NAMES if (out / n).exists()]
    if out.exists() and not out.is_dir():
        raise TrainError(f"{out}: exists and is not a folder")
    if resume:
        if latest_checkpoint(out) is None:
            raise TrainError(f"{out}: no checkpoint to resume from (checkpoints/step_*/state.json)")
        return
    if present and not force:
        raise TrainError(f"{out}: already holds results ({', '.join(present)}); pass --resume to continue "
                         "that run or --force to delete them")
    for name in present:
        p = out / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def latest_checkpoint(out: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    done = sorted(p for p in (out / "checkpoints").glob("step_*") if (p / "state.json").is_file())
    return done[-1] if done else None


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


def save_checkpoint(out: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict, rng_states: list[dict], base_name: str, keep: int) -> Path:
    """Write checkpoint `step` (rank 0 only; `rng_states` holds every rank's, in rank order)."""
    final = out / "checkpoints" / f"step_{step:08d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lora.save_adapter(model, tmp / "adapter", base_model_name_or_path=base_name)
    opt = optimizer.state_dict()
    tensors, extra = {}, {}
    for idx, per_param in opt["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                extra[f"state.{idx}.{key}"] = value
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in opt["param_groups"]]
    (tmp / "optimizer.json").write_text(json.dumps({"param_groups": groups, "extra": extra}, indent=1))
    rng_tensors = {}
    for r, s in enumerate(rng_states):
        rng_tensors[f"rank{r}.torch"] = s["torch"]
        rng_tensors.update({f"rank{r}.cuda.{i}": t for i, t in enumerate(s["cuda"])})
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    (tmp / "rng.json").write_text(json.dumps([{"python": s["python"], "numpy": s["numpy"],
                                               "n_cuda": len(s["cuda"])} for s in rng_states]))
    (tmp / "state.json").write_text(json.dumps({**state, "step": step, "world_size": len(rng_states)}, indent=1))
    tmp.rename(final)
    older = sorted(p for p in (out / "checkpoints").glob("step_*") if p != final and not p.name.endswith(".tmp"))
    for p in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(p)
    return final


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int,
                    world_size: int) -> dict:
    """Restore adapter weights, optimiser and this rank's RNG state; returns state.json."""
    state = json.loads((path / "state.json").read_text())
    if state["world_size"] != world_size:
        raise TrainError(f"{path}: was written by {state['world_size']} processes, resuming with {world_size}; "
                         "use the same number of processes")
    lora.load_adapter(model, path / "adapter")
    tensors = load_file(str(path / "optimizer.safetensors"))
    meta = json.loads((path / "optimizer.json").read_text())
    per_param: dict[int, dict] = {}
    for key, value in list(tensors.items()) + list(meta["extra"].items()):
        _, idx, name = key.split(".", 2)
        per_param.setdefault(int(idx), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    rng_t = load_file(str(path / "rng.safetensors"))
    rng_j = json.loads((path / "rng.json").read_text())[rank]
    set_rng_state({"torch": rng_t[f"rank{rank}.torch"],
                   "cuda": [rng_t[f"rank{rank}.cuda.{i}"] for i in range(rng_j["n_cuda"])],
                   "python": rng_j["python"], "numpy": rng_j["numpy"]})
    return state


def metrics_logger(path: Path, start_step: int, write: bool):
    """A function appending one JSON row per call to metrics.jsonl (when `write`: rank 0); rows after a resumed
    checkpoint's step are dropped first, so the file equals that of an uninterrupted run."""
    if write and path.is_file():
        rows = [r for r in path.read_text().splitlines() if json.loads(r)["step"] <= start_step]
        path.write_text("".join(r + "\n" for r in rows))

    def log(row: dict) -> None:
        if write:
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")
    return log
