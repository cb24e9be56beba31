"""LoRA fine-tuning of a Llama on instruction data, top to bottom: setup, the loop, `train_step`, evaluation.

    from lora.finetune import TrainConfig, train, PRESETS
    out = train(TrainConfig(**{**PRESETS["demo"], "out": "runs/demo"}))     # the CPU demo, a few minutes
    torchrun --nproc_per_node 4 scripts/train.py --preset paper ...   # the same function under DDP / FSDP2

`train` runs `fine_tune` inside `run_guard` (`guard.py`: the checks before anything is written, the run
folder's lock, SIGINT / SIGTERM, the processes of a torchrun job). `fine_tune`: (1) load the base and add
LoRA (Eq. 2), AdamW on A and B only; (2) tokenise the data; (3) the loop: `train_step` (Eq. 3 over this
rank's micro-batches, backward, clip, AdamW), then `after_step` (log, `evaluate` and keep the best adapter,
checkpoint, halt); (4) save the adapters, the loss curve and DONE.

Precision: on GPU the frozen base is held in bfloat16 and the LoRA A/B in float32 (master weights that keep
lr 3e-5-sized updates, which bf16's 8-bit mantissa would round away); the forward runs under bf16
autocast. On CPU everything is float32, unless `dtype` says otherwise (the demo preset's float64 gives the
same figures on every CPU, whatever its vector instructions).
"""
from __future__ import annotations

import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from plumbing.signals import Interrupted, StopFlag

import lora
from lora.finetune import checkpoint, data, distributed, run_folder
from lora.finetune.config import TrainConfig
from lora.finetune.guard import run_guard
from lora.finetune.loss import SummedNLL, loss_denominator, validation_loss
from lora.finetune.schedule import lr_at, warmup_warning
from lora.finetune.setup import finish, load_model, save_adapter, write_run_config


@dataclass
class Run:
    """What the steps of one run share (built once in `fine_tune`)."""

    cfg: TrainConfig
    out: Path
    info: distributed.DistInfo
    model: torch.nn.Module
    loss_module: SummedNLL       # Eq. 3's numerator around the model; validation runs it unwrapped
    step_module: torch.nn.Module  # the same under DDP (or FSDP2, or torch.compile)
    optimizer: torch.optim.Optimizer
    params: list
    autocast: Callable
    train_ex: list
    val_ex: list
    total_steps: int
    state: dict                   # step, tokens_seen, best_val_loss, best_step, base: what a checkpoint keeps
    log: run_folder.MetricsLog
    bar: tqdm
    stop: StopFlag
    on_step: Callable[[int], None]


def train(cfg: TrainConfig, resume: bool = False, force: bool = False,
          on_step: Callable[[int], None] | None = None) -> Path:
    """Fine-tune `cfg.base` with LoRA on `cfg.data` into the run folder `cfg.out`; returns the folder.

    Args:
        cfg: every knob of the run (`TrainConfig`, checked before anything is written).
        resume: continue the run in `cfg.out` from its newest intact checkpoint (from step 0 when it has
            none yet); `cfg` must be that run's config (the fields in `RUNTIME_FIELDS` may differ).
        force: delete the folder's earlier results first.
        on_step: called with the step number after each optimiser step (and each warm-up step of the demo
            base): the entry point's hook, e.g. its CPU thread policy (`plumbing.threads.tick`).

    Raises:
        TrainError: bad input (exit status 2), before anything is written; RunFailed: a failure while running
            (exit status 1); Interrupted: SIGINT / SIGTERM, after a checkpoint was saved (130 / 143).
    """
    with run_guard(cfg, resume, force) as guard:  # checks, lock, signals, torchrun (guard.py)
        if guard.finished:
            return guard.out
        return fine_tune(cfg, guard.out, guard.info, guard.ckpt, guard.stop, on_step or (lambda step: None))


def fine_tune(cfg: TrainConfig, out: Path, info: distributed.DistInfo, ckpt: Path | None, stop: StopFlag,
              on_step: Callable[[int], None]) -> Path:
    """The recipe: setup, the loop, the finish (`train` runs it inside `run_guard`)."""
    # ---- (1) base model + LoRA; AdamW on A and B only ----
    on_gpu = info.device.type == "cuda"
    dtype = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
             "auto": torch.bfloat16 if on_gpu else torch.float32}[cfg.dtype]
    autocast = (lambda: torch.autocast(info.device.type, dtype=torch.bfloat16)) if dtype == torch.bfloat16 \
        else contextlib.nullcontext
    model, tok, base = load_model(cfg, out, info, dtype, ckpt, on_step)
    loss_module = SummedNLL(model, cfg.loss_norm)
    if cfg.fsdp:
        distributed.shard_fsdp(loss_module, model.model.layers)  # before the optimiser sees the parameters
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                  eps=cfg.adam_eps, weight_decay=cfg.weight_decay, fused=on_gpu)

    # ---- (2) data ----
    train_ex, val_ex, report = data.prepare(cfg, out, tok, write=info.is_main)
    total_steps = data.total_steps(len(train_ex), cfg.batch_size, cfg.num_epochs, cfg.max_steps)
    warning = warmup_warning(cfg.learning_rate, cfg.warmup_steps, total_steps, cfg.max_steps, cfg.num_epochs)
    if warning and info.is_main:
        print(warning, file=sys.stderr)
    state = {"step": 0, "tokens_seen": 0, "best_val_loss": None, "best_step": 0, "base": base}
    if ckpt is not None:
        state = checkpoint.load_checkpoint(ckpt, model, optimizer, info.rank)
        print(f"resuming from {ckpt} (step {state['step']} of {total_steps})", file=sys.stderr)
    else:
        distributed.seed_rank_stream(cfg.seed, info)  # dropout masks differ across ranks
        if info.is_main:
            write_run_config(cfg, out, info, base, report, dtype, len(train_ex), len(val_ex), total_steps, model)
    step_module = loss_module if cfg.fsdp else distributed.wrap_ddp(loss_module, info)
    if cfg.compile:
        step_module = torch.compile(step_module)
    log = run_folder.open_log(cfg, out, state["step"], info.is_main)  # metrics.jsonl (+ the --report-to tracker)
    bar = tqdm(total=total_steps, initial=state["step"], desc="train", unit="step", disable=not info.is_main)
    run = Run(cfg, out, info, model, loss_module, step_module, optimizer, params, autocast, train_ex, val_ex,
              total_steps, state, log, bar, stop, on_step)
    if state["step"] == 0 and val_ex:
        evaluate(run, 0)

    # ---- (3) the loop ----
    with bar, log, stop.deferred():
        for step in range(state["step"], total_steps):
            t0 = time.perf_counter()
            lr = lr_at(step, cfg.learning_rate, cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
            batch = data.global_batch(step, train_ex, cfg.batch_size, cfg.seed)
            rank_loss, grad_norm = train_step(run, batch, lr)
            if after_step(run, step + 1, batch, rank_loss, grad_norm, lr, time.perf_counter() - t0):
                return out

    # ---- (4) finish ----
    save_adapter(model, out / "adapter_last", base, info)
    if distributed.broadcast_object(not (out / "adapter").is_dir(), info):  # no validation picked one
        save_adapter(model, out / "adapter", base, info)
    if info.is_main:
        finish(cfg, out, tok, state)
    distributed.barrier(info)
    return out


def train_step(run: Run, batch: list[dict], lr: float) -> tuple[float, float]:
    """One optimiser step on a global batch: this rank's micro-batches, Eq. 3, backward, clip, AdamW.

    Returns:
        (this rank's share of the batch's loss: summed over the ranks it is Eq. 3 of the batch,
         the gradient norm before clipping).
    """
    cfg, info = run.cfg, run.info
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    scale = info.world_size / max(1, loss_denominator(batch, cfg.loss_norm))  # DDP / FSDP average over ranks
    micro = data.rank_micro_batches(batch, cfg.batch_size, cfg.micro_batch_size, info.rank, info.world_size)
    run.step_module.train()
    loss_sum = 0.0
    for j, mb in enumerate(micro):
        rows = data.micro_batch(mb, cfg.packing, cfg.pack_row_tokens or cfg.cutoff_len)  # ids, labels [B, T], ...
        tensors = [t.to(info.device) for t in rows]
        with distributed.no_sync(run.step_module, skip=j < len(micro) - 1):  # gradients reduced once, at the last
            with run.autocast():
                nll = run.step_module(*tensors)  # Eq. 3's numerator on this micro-batch
            (nll * scale).backward()
        loss_sum += nll.item()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.params, cfg.max_grad_norm).item()
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss_sum * scale / info.world_size, grad_norm


def evaluate(run: Run, step: int) -> float:
    """The validation loss (Eq. 3 over all held-out target tokens), logged as a "val" row and returned."""
    val = validation_loss(run.loss_module, run.val_ex, run.cfg, run.info, run.autocast)
    run.log({"type": "val", "step": step, "loss": val})
    return val


def after_step(run: Run, step: int, batch: list[dict], rank_loss: float, grad_norm: float, lr: float,
               seconds: float) -> bool:
    """Everything a finished step leaves to do: log, validate (keeping the best adapter), checkpoint, halt.

    Returns:
        True when the run stops here (`--stop-after-steps`). Raises `Interrupted` after the checkpoint when
        a SIGINT / SIGTERM arrived during the step.
    """
    cfg, info, state = run.cfg, run.info, run.state
    loss, stops = distributed.all_reduce_sum([rank_loss, float(run.stop.requested)], info)
    tokens = sum(len(e["input_ids"]) for e in batch)
    state.update(step=step, tokens_seen=state["tokens_seen"] + tokens)
    run.log({"type": "train", "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": tokens,
             "tokens_per_s": tokens / seconds})
    run.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=round(tokens / seconds), refresh=False)
    run.bar.update(1)
    run.on_step(step)
    last = step == run.total_steps
    if run.val_ex and (step % cfg.eval_steps == 0 or last):
        val = evaluate(run, step)
        if state["best_val_loss"] is None or val < state["best_val_loss"]:
            state.update(best_val_loss=val, best_step=step)
            save_adapter(run.model, run.out / "adapter", state["base"], info)
    halt = stops > 0 or (cfg.stop_after_steps > 0 and step == cfg.stop_after_steps and not last)
    if step % cfg.save_steps == 0 or last or halt:
        rngs = distributed.gather_objects(checkpoint.rng_state(), info)
        adapter, opt_state = lora.adapter_state(run.model), checkpoint.optimizer_state(run.model, run.optimizer)
        if info.is_main:
            checkpoint.save_checkpoint(run.out, step, run.model, run.optimizer, state, rngs, adapter, opt_state,
                                       state["base"], cfg.keep_checkpoints)
    if stops > 0:
        raise Interrupted(run.stop.requested or signal.SIGTERM)
    if halt:
        print(f"{run.out}: stopped after step {step} (checkpoint written; continue with --resume)", file=sys.stderr)
    return halt
