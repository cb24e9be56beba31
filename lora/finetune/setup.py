"""What a run does around its loop (`recipe.py`): the model it trains, the adapters and the record of the run it
writes, and the finish (loss curve, demo comparison, DONE). The checks before anything is written are `guard.py`'s."""
from __future__ import annotations

import functools
import inspect
import json
import sys
from pathlib import Path
from typing import Callable

import torch

from minillama import Llama, load_tokenizer
from minillama.load import resolve_model_dir
from plumbing.durable import write_json_atomic

import lora
from lora.base_check import base_fingerprint
from lora.finetune import demo_data, demo_model, distributed
from lora.finetune.config import RunFailed, TrainConfig, TrainError, config_to_dict
from lora.finetune.guard import preflight  # noqa: F401  (moved to guard.py; importable from here as before)
from lora.finetune.plots import plot_loss


def load_model(cfg: TrainConfig, out: Path, info, dtype: torch.dtype, ckpt: Path | None,
               on_step: Callable[[int], None] | None = None):
    """The base model with LoRA (same seeded init on every rank; a checkpoint's weights on resume),
    its tokenizer and the base's path. The demo writes its data and builds (or copies) its base first
    (`on_step` is called after each of its warm-up steps)."""
    base = str(out / "base") if cfg.base == "demo" else cfg.base
    if cfg.base == "demo" and info.is_main:
        if not (out / "demo_data.json").is_file():
            demo_data.write_demo_dataset(out / "demo_data.json", cfg.demo_records, seed=cfg.seed)
        if not (out / "base" / "config.json").is_file():
            records = json.loads((out / "demo_data.json").read_text())
            demo_model.cached_demo_base(out / "base", records, cfg.demo_pretrain_steps, seed=cfg.seed, dtype=dtype,
                                        on_step=on_step)
    distributed.barrier(info)
    model = Llama.from_pretrained(base, dtype=dtype, device=info.device,  # a 4-bit NF4 base for QLoRA
                                  quantize=None if cfg.quantize == "none" else cfg.quantize)
    if cfg.packing and "segment_ids" not in inspect.signature(model.model.forward).parameters:
        raise TrainError(f"--packing: the base {base} ({type(model).__name__}) cannot take a block-diagonal "
                         "attention mask; train without --packing")
    torch.manual_seed(cfg.seed)
    try:
        lora.apply_lora(model, lora.LoraConfig(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                                               target_modules=tuple(cfg.lora_target_modules), use_dora=cfg.use_dora))
    except lora.LoraError as e:  # a target LoRA (and DoRA) cannot wrap: one line naming the flag
        raise TrainError(f"--lora-target-modules{' (with --use-dora)' if cfg.use_dora else ''}: {e}") from None
    if ckpt is not None:
        lora.load_adapter(model, ckpt / "adapter")
    if cfg.activation_checkpointing:
        model.gradient_checkpointing_enable()
    tokenizer = load_tokenizer(base)  # a folder, a Hub id or a .gguf file
    return model, tokenizer, base


def write_run_config(cfg: TrainConfig, out: Path, info, base: str, report: dict, dtype: torch.dtype,
                     n_train: int, n_val: int, total_steps: int, model) -> None:
    """`config.json`: the config, and what it resolved to on this machine (rank 0, fresh runs)."""
    resolved = {"base_path": base, "base_fingerprint": _base_fingerprint(base),
                "data_path": report["file"], "data_sha256": report["sha256"],
                "world_size": info.world_size, "device": str(info.device), "dtype": str(dtype),
                "train_records": n_train, "val_records": n_val, "total_steps": total_steps,
                "lora": str(lora.trainable_summary(model)), "torch": torch.__version__}
    write_json_atomic(out / "config.json", {**config_to_dict(cfg), "resolved": resolved})


@functools.lru_cache(maxsize=4)
def _base_fingerprint(base: str) -> dict:
    """The fingerprint of the base (`lora.base_check`), read once per run from its headers."""
    return base_fingerprint(resolve_model_dir(base))


def save_adapter(model, folder: Path, base: str, info) -> None:
    """Gather the LoRA weights (every rank, for FSDP) and write them as a PEFT adapter (rank 0), with the
    fingerprint of the base it was trained on."""
    state = lora.adapter_state(model)
    if info.is_main:
        try:
            lora.save_adapter(model, folder, base_model_name_or_path=base, state=state,
                              base_fingerprint=_base_fingerprint(base))
        except OSError as e:
            raise RunFailed(f"{folder}: cannot write the adapter ({e.strerror or e}); free space and rerun with "
                            "--resume") from None


def finish(cfg: TrainConfig, out: Path, tok, state: dict) -> None:
    """loss.png, the demo's held-out comparison, DONE (rank 0)."""
    print(plot_loss(out / "metrics.jsonl", out / "loss.png"), file=sys.stderr)
    if cfg.base == "demo" and cfg.demo_eval:
        result = demo_model.held_out_comparison(out, tok, cfg.template)
        write_json_atomic(out / "demo_eval.json", result)
        b, f = result["base"], result["finetuned"]
        print(f"demo, {result['n']} held-out pairs: unigram F1 base {b['mean_f1']:.3f} -> fine-tuned "
              f"{f['mean_f1']:.3f}; right condition named {b['condition_accuracy']:.0%} -> "
              f"{f['condition_accuracy']:.0%}", file=sys.stderr)
    best = state["best_val_loss"]
    print(f"best validation loss {'none' if best is None else f'{best:.4f}'} at step {state['best_step']}; run "
          f"folder {out}", file=sys.stderr)
    write_json_atomic(out / "DONE", {"step": state["step"], "best_val_loss": state["best_val_loss"],
                                     "best_step": state["best_step"]})
