"""What a run does around its loop (`recipe.py`): the checks before anything is written, the model it trains,
the adapters and the record of the run it writes, and the finish (loss curve, demo comparison, DONE)."""
from __future__ import annotations

import functools
import inspect
import json
import sys
from pathlib import Path

import torch

from minillama import Llama, LlamaConfig, load_tokenizer
from minillama.gguf import is_gguf, llama_config, read_gguf
from minillama.hub import check_access, is_hub_id
from minillama.load import resolve_model_dir
from plumbing.durable import write_json_atomic

import lora
from lora.base_check import base_fingerprint
from lora.finetune import checkpoint, demo_data, demo_model, distributed, run_folder, trackers
from lora.finetune.config import RunFailed, TrainConfig, TrainError, check_resumable, config_to_dict
from lora.finetune.plots import plot_loss
from lora.finetune.records import resolve_dataset, usable_records


def preflight(cfg: TrainConfig, out: Path, resume: bool, force: bool, world_size: int) -> Path | None:
    """(1) Everything that can be refused is refused here, before the run folder is touched.

    Returns:
        The checkpoint to resume from (None for a fresh run, a finished one, or a resumed one without any).
    """
    ckpt = None
    if resume:
        check_resumable(cfg, run_folder.read_config(out), str(out / "config.json"))
        ckpt, notes = checkpoint.latest_intact(out, world_size)
        for note in notes:
            print(f"warning: skipping checkpoint {note}", file=sys.stderr)
        if ckpt is None and not (out / "DONE").is_file():
            print(f"{out}: no intact checkpoint yet; training starts again from step 0", file=sys.stderr)
    run_folder.check_out(out, resume, force)
    trackers.check_installed(cfg.report_to)
    if resume and (out / "DONE").is_file():
        return None
    if cfg.fsdp and world_size < 2:
        raise TrainError("--fsdp: shards the base over several processes; start the run with torchrun, e.g. "
                         "`torchrun --standalone --nproc_per_node 2 scripts/train.py ... --fsdp`")
    if cfg.batch_size % (cfg.micro_batch_size * world_size):
        raise TrainError(f"--batch-size: {cfg.batch_size} is not a multiple of --micro-batch-size x processes "
                         f"= {cfg.micro_batch_size * world_size}")
    if cfg.base != "demo":
        if Path(cfg.base).expanduser().is_dir():
            LlamaConfig.from_file(Path(cfg.base).expanduser() / "config.json")
        elif is_gguf(Path(cfg.base).expanduser()):  # a llama.cpp file: its header and tokenizer, read now
            llama_config(read_gguf(Path(cfg.base).expanduser()))
            load_tokenizer(Path(cfg.base).expanduser())
        elif not is_hub_id(cfg.base):
            raise TrainError(f"--base {cfg.base}: base model folder not found")
        else:
            check_access(cfg.base, "pass --base DIR with a local copy")
    if cfg.data != "demo":
        usable_records(resolve_dataset(cfg.data), cfg.on_bad_record)
    return ckpt


def load_model(cfg: TrainConfig, out: Path, info, dtype: torch.dtype, ckpt: Path | None):
    """(3) The base model with LoRA (same seeded init on every rank; a checkpoint's weights on resume),
    its tokenizer and the base's path. The demo writes its data and builds (or copies) its base first."""
    base = str(out / "base") if cfg.base == "demo" else cfg.base
    if cfg.base == "demo" and info.is_main:
        if not (out / "demo_data.json").is_file():
            demo_data.write_demo_dataset(out / "demo_data.json", cfg.demo_records, seed=cfg.seed)
        if not (out / "base" / "config.json").is_file():
            records = json.loads((out / "demo_data.json").read_text())
            demo_model.cached_demo_base(out / "base", records, cfg.demo_pretrain_steps, seed=cfg.seed, dtype=dtype)
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
    """(6) loss.png, the demo's held-out comparison, DONE (rank 0)."""
    print(plot_loss(out / "metrics.jsonl", out / "loss.png"), file=sys.stderr)
    if cfg.base == "demo" and cfg.demo_eval:
        result = demo_model.held_out_comparison(out, tok, cfg.template)
        write_json_atomic(out / "demo_eval.json", result)
        b, f = result["base"], result["finetuned"]
        print(f"demo, {result['n']} held-out pairs: unigram F1 base {b['mean_f1']:.3f} -> fine-tuned "
              f"{f['mean_f1']:.3f}; right condition named {b['condition_accuracy']:.0%} -> "
              f"{f['condition_accuracy']:.0%}", file=sys.stderr)
    print(f"best validation loss {state['best_val_loss']} at step {state['best_step']}; run folder {out}",
          file=sys.stderr)
    write_json_atomic(out / "DONE", {"step": state["step"], "best_val_loss": state["best_val_loss"],
                                     "best_step": state["best_step"]})
