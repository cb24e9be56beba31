"""LoRA fine-tuning of a Llama on instruction data: the paper's section 4.3 run, read top to bottom.

    python scripts/train.py                                   # CPU demo (tiny Llama, generated data)
    python scripts/train.py --preset paper                    # Llama-2-7b-chat + GenMedGPT-5k, 1 GPU
    torchrun --nproc_per_node 4 scripts/train.py --preset paper --batch-size 4            # DDP
    torchrun --nproc_per_node 4 scripts/train.py --preset paper --batch-size 4 --fsdp     # FSDP2
    python scripts/train.py --resume --out runs/paper         # continue an interrupted run exactly

The run, in order: (1) parse and check every input before anything is written; (2) take the run
folder; (3) load the base model and add LoRA (Eq. 2); (4) tokenise the data; (5) the loop: for each
optimiser step, Eq. 3 summed over the micro-batches of this rank, backward, clip, AdamW, log, validate,
checkpoint; (6) save the adapters, the loss curve and DONE. The helpers live in `lora/finetune/`.

Precision: on GPU the frozen base is held in bfloat16 and the LoRA A/B in float32 (master weights that
keep lr 3e-5-sized updates, which bf16's 8-bit mantissa would round away); the forward runs under
bf16 autocast. On CPU everything is float32. Exit status: 0 done, 1 failure while running (disk
full ...), 2 bad input, 130/143 interrupted by SIGINT/SIGTERM after saving a checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

from minillama.threads import prepare_openmp

prepare_openmp()  # before torch is imported, since OpenMP reads its wait policy once (minillama/threads.py)

import torch
from tqdm import tqdm

import lora
from lora.finetune import checkpoint, data, demo_data, demo_model, distributed, run_dir
from lora.finetune.config import RunFailed, TrainConfig, TrainError, config_to_dict
from lora.finetune.files import is_disk_full
from lora.finetune.flags import config_from_args, resumed_config
from lora.finetune.loss import SummedNLL, loss_denominator
from lora.finetune.plots import plot_loss
from lora.finetune.records import resolve_dataset, usable_records
from lora.finetune.schedule import lr_at
from lora.finetune.signals import StopFlag
from minillama import Llama, LlamaConfig, MiniLlamaError, load_tokenizer
from minillama import threads
from minillama.durable import write_json_atomic
from minillama.jobcontrol import CommandError, Interrupted
from minillama.hub import check_access, is_hub_id


def preflight(cfg: TrainConfig, out: Path, resume: bool, force: bool, world_size: int) -> Path | None:
    """(1) Everything that can be refused is refused here, before the run folder is touched.

    Returns:
        The checkpoint to resume from (None for a fresh run or a finished one).
    """
    ckpt, notes = checkpoint.latest_intact(out, world_size) if resume else (None, [])
    for note in notes:
        print(f"warning: skipping checkpoint {note}", file=sys.stderr)
    run_dir.check_out(out, resume, force, ckpt is not None)
    if resume and (out / "DONE").is_file():
        return None
    if cfg.batch_size % (cfg.micro_batch_size * world_size):
        raise TrainError(f"--batch-size: {cfg.batch_size} is not a multiple of --micro-batch-size x processes "
                         f"= {cfg.micro_batch_size * world_size}")
    if cfg.base != "demo":
        if Path(cfg.base).expanduser().is_dir():
            LlamaConfig.from_file(Path(cfg.base).expanduser() / "config.json")
        elif not is_hub_id(cfg.base):
            raise TrainError(f"--base {cfg.base}: base model folder not found")
        else:
            check_access(cfg.base, "pass --base DIR with a local copy")
    if cfg.data != "demo":
        usable_records(resolve_dataset(cfg.data), cfg.on_bad_record)
    return ckpt


def load_model(cfg: TrainConfig, out: Path, info, dtype: torch.dtype, ckpt: Path | None):
    """(3) The base model with LoRA (same seeded init on every rank; a checkpoint's weights on resume)."""
    base = str(out / "base") if cfg.base == "demo" else cfg.base
    if cfg.base == "demo" and info.is_main and not (out / "base" / "config.json").is_file():
        records = json.loads((out / "demo_data.json").read_text())
        demo_model.cached_demo_base(out / "base", records, cfg.demo_pretrain_steps, seed=cfg.seed)
    distributed.barrier(info)
    model = Llama.from_pretrained(base, dtype=dtype, device=info.device,  # a 4-bit NF4 base for QLoRA
                                  quantize=None if cfg.quantize == "none" else cfg.quantize)
    torch.manual_seed(cfg.seed)
    lora.apply_lora(model, lora.LoraConfig(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                                           target_modules=tuple(cfg.lora_target_modules)))
    if ckpt is not None:
        lora.load_adapter(model, ckpt / "adapter")
    if cfg.activation_checkpointing:
        model.gradient_checkpointing_enable()
    return model, load_tokenizer(base), base


@torch.no_grad()
def evaluate(loss_module, examples: list[dict], cfg: TrainConfig, info, autocast) -> float:
    """Validation loss: Eq. 3 over all held-out target tokens, every rank running as many forwards."""
    loss_module.eval()
    mine = examples[info.rank::info.world_size]
    n_batches = -(-len(examples) // (cfg.micro_batch_size * info.world_size))  # the same on every rank
    total = 0.0
    for i in range(n_batches):
        part = mine[i * cfg.micro_batch_size:(i + 1) * cfg.micro_batch_size] or [data.DUMMY_EXAMPLE]
        ids, labels = data.collate(part)
        with autocast():
            total += loss_module(ids.to(info.device), labels.to(info.device)).item()
    total, denom = distributed.all_reduce_sum([total, loss_denominator(mine, cfg.loss_norm)], info)
    return total / max(denom, 1)


def save_adapter(model, folder: Path, base: str, info) -> None:
    """Gather the LoRA weights (every rank, for FSDP) and write them as a PEFT adapter (rank 0)."""
    state = lora.adapter_state(model)
    if info.is_main:
        try:
            lora.save_adapter(model, folder, base_model_name_or_path=base, state=state)
        except OSError as e:
            raise RunFailed(f"{folder}: cannot write the adapter ({e}); free space and rerun with --resume") from None


def train(argv: list[str] | None, stop: StopFlag) -> Path:
    # ---- (1) parse and check ----
    cfg, args, explicit = config_from_args(argv)
    out = Path(cfg.out).expanduser()
    if args.resume:
        cfg = resumed_config(run_dir.read_config(out), explicit, str(out / "config.json"))
    threads.configure_threads(cfg.num_threads)
    info = distributed.setup(cfg.device)
    try:  # every rank checks before any rank writes; a refusal on one rank stops all
        try:
            ckpt, problem = preflight(cfg, out, args.resume, args.force, info.world_size), None
        except (TrainError, MiniLlamaError, lora.LoraError) as e:
            ckpt, problem = None, e
        refusals = [p for p in distributed.gather_objects(problem and str(problem), info) if p]
        if problem is not None:
            raise problem
        if refusals:
            raise TrainError(refusals[0])
    except BaseException:
        distributed.teardown(info)
        raise
    if args.resume and (out / "DONE").is_file():
        print(f"{out}: this run has finished already (DONE)", file=sys.stderr)
        distributed.teardown(info)
        return out

    # ---- (2) take the run folder: one run at a time; a fresh start that fails leaves no trace ----
    created = not out.exists()
    folder_lock = run_dir.lock(out) if info.is_main else None
    try:
        if info.is_main and args.force:
            run_dir.clear_results(out)
        if cfg.data == "demo" and info.is_main and not (out / "demo_data.json").is_file():
            demo_data.write_demo_dataset(out / "demo_data.json", cfg.demo_records, seed=cfg.seed)
        distributed.barrier(info)
        return _train(cfg, out, info, ckpt, stop)
    except BaseException:
        if created and info.is_main and not any((out / n).exists() for n in run_dir.TRAINED_NAMES):
            folder_lock.release()
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        if folder_lock is not None:
            folder_lock.release()
        distributed.teardown(info)


def _train(cfg: TrainConfig, out: Path, info, ckpt: Path | None, stop: StopFlag) -> Path:
    # ---- (3) base model + LoRA ----
    on_gpu = info.device.type == "cuda"
    dtype = torch.bfloat16 if cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and on_gpu) else torch.float32
    autocast = (lambda: torch.autocast(info.device.type, dtype=torch.bfloat16)) if dtype == torch.bfloat16 \
        else contextlib.nullcontext
    model, tok, base = load_model(cfg, out, info, dtype, ckpt)
    loss_module = SummedNLL(model, cfg.loss_norm)  # Eq. 3's numerator; validation uses it unwrapped
    if cfg.fsdp:
        distributed.shard_fsdp(loss_module, model.model.layers)  # before the optimiser sees the parameters
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                  eps=cfg.adam_eps, weight_decay=cfg.weight_decay, fused=on_gpu)

    # ---- (4) data ----
    train_ex, val_ex, report = data.prepare(cfg, out, tok, write=info.is_main)
    total_steps = data.total_steps(len(train_ex), cfg.batch_size, cfg.num_epochs, cfg.max_steps)
    state = {"step": 0, "tokens_seen": 0, "best_val_loss": None, "best_step": 0, "base": base}
    if ckpt is not None:
        state = checkpoint.load_checkpoint(ckpt, model, optimizer, info.rank)
        print(f"resuming from {ckpt} (step {state['step']} of {total_steps})", file=sys.stderr)
    else:
        distributed.seed_rank_stream(cfg.seed, info)  # dropout masks differ across ranks
        if info.is_main:
            resolved = {"base_path": base, "data_path": report["file"], "data_sha256": report["sha256"],
                        "world_size": info.world_size, "device": str(info.device), "dtype": str(dtype),
                        "train_records": len(train_ex), "val_records": len(val_ex), "total_steps": total_steps,
                        "lora": str(lora.trainable_summary(model)), "torch": torch.__version__}
            write_json_atomic(out / "config.json", {**config_to_dict(cfg), "resolved": resolved})
    step_module = loss_module if cfg.fsdp else distributed.wrap_ddp(loss_module, info)
    if cfg.compile:
        step_module = torch.compile(step_module)
    log = run_dir.MetricsLog(out / "metrics.jsonl", state["step"], info.is_main)
    if state["step"] == 0 and val_ex:
        log({"type": "val", "step": 0, "loss": evaluate(loss_module, val_ex, cfg, info, autocast)})

    # ---- (5) the loop ----
    bar = tqdm(total=total_steps, initial=state["step"], desc="train", unit="step", disable=not info.is_main)
    with bar, stop.deferred():
        for step in range(state["step"], total_steps):
            t0, lr = time.perf_counter(), lr_at(step, cfg.learning_rate, cfg.warmup_steps, total_steps,
                                               cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = data.global_batch(step, train_ex, cfg.batch_size, cfg.seed)
            scale = info.world_size / max(1, loss_denominator(batch, cfg.loss_norm))  # ranks' gradients are averaged
            micro = data.rank_micro_batches(batch, cfg.batch_size, cfg.micro_batch_size, info.rank, info.world_size)
            step_module.train()
            loss_sum = 0.0
            for j, mb in enumerate(micro):
                ids, labels = (t.to(info.device) for t in data.collate(mb))
                with distributed.no_sync(step_module, skip=j < len(micro) - 1):
                    with autocast():
                        nll = step_module(ids, labels)  # Eq. 3 numerator of this micro-batch
                    (nll * scale).backward()
                loss_sum += nll.item()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm).item()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            summed, stops = distributed.all_reduce_sum([loss_sum, float(stop.requested)], info)
            loss = summed * scale / info.world_size
            tokens, seconds = sum(len(e["input_ids"]) for e in batch), time.perf_counter() - t0
            state.update(step=step + 1, tokens_seen=state["tokens_seen"] + tokens)
            log({"type": "train", "step": step + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                 "tokens": tokens, "tokens_per_s": tokens / seconds})
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=round(tokens / seconds), refresh=False)
            bar.update(1)
            threads.tick()
            last = step + 1 == total_steps
            if val_ex and ((step + 1) % cfg.eval_steps == 0 or last):
                val = evaluate(loss_module, val_ex, cfg, info, autocast)
                log({"type": "val", "step": step + 1, "loss": val})
                if state["best_val_loss"] is None or val < state["best_val_loss"]:
                    state.update(best_val_loss=val, best_step=step + 1)
                    save_adapter(model, out / "adapter", base, info)
            halt = stops > 0 or (cfg.stop_after_steps > 0 and step + 1 == cfg.stop_after_steps and not last)
            if (step + 1) % cfg.save_steps == 0 or last or halt:
                rngs = distributed.gather_objects(checkpoint.rng_state(), info)
                adapter, opt_state = lora.adapter_state(model), checkpoint.optimizer_state(model, optimizer)
                if info.is_main:
                    checkpoint.save_checkpoint(out, step + 1, model, optimizer, state, rngs, adapter, opt_state,
                                               base, cfg.keep_checkpoints)
            if halt:
                if stops > 0:
                    raise Interrupted(stop.requested or 15)
                print(f"{out}: stopped after step {state['step']} (checkpoint written; continue with --resume)",
                      file=sys.stderr)
                return out

    # ---- (6) finish ----
    save_adapter(model, out / "adapter_last", base, info)
    if distributed.broadcast_object(not (out / "adapter").is_dir(), info):  # no validation picked one
        save_adapter(model, out / "adapter", base, info)
    if info.is_main:
        finish(cfg, out, tok, state)
    distributed.barrier(info)
    return out


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
    print(f"best validation loss {state['best_val_loss']} at step {state['best_step']}; run folder {out}",
          file=sys.stderr)
    write_json_atomic(out / "DONE", {"step": state["step"], "best_val_loss": state["best_val_loss"],
                                     "best_step": state["best_step"]})


def main(argv: list[str] | None = None) -> int:
    """Console entry (`medlora-train`): one `error: ...` line and a documented exit status on failure."""
    try:
        with StopFlag() as stop:
            train(argv, stop)
        return 0
    except Interrupted as e:
        print(f"interrupted ({e}); rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return e.exit_status
    except CommandError as e:  # TrainError, MiniLlamaError, LoraError: bad input 2, a failure while running 1
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if not is_disk_full(e) and not isinstance(e, PermissionError):
            raise
        print(f"error: {e.filename or 'the run folder'}: {e.strerror}; free space (or fix permissions) and rerun "
              "with --resume", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
