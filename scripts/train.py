"""LoRA fine-tuning of a Llama on instruction data: the paper's section 4.3 run, resumable, DDP-ready.

    python scripts/train.py                                   # CPU demo (tiny Llama, generated data)
    python scripts/train.py --preset paper                    # Llama-2-7b-chat + GenMedGPT-5k, 1 GPU
    torchrun --nproc_per_node 4 scripts/train.py --preset paper --batch-size 4
    python scripts/train.py --resume --out runs/paper         # continue an interrupted run

Loss (Eq. 3 of the paper, the mean next-token cross-entropy): with `loss_norm="token"` (default) a step
minimises sum(NLL of target tokens in the global batch) / (number of target tokens in the global
batch), which is Eq. 3 with T = the target tokens of the batch; it equals the per-sequence Eq. 3 at
batch 1 (the paper's setting) and does not depend on how the batch is cut into micro-batches or ranks.
`loss_norm="sequence"` averages the per-sequence Eq. 3 over the batch instead. Targets are the
response tokens only unless `train_on_inputs` (see docs/training.md).

Precision: on GPU the frozen base is held in bfloat16 and the LoRA A/B in float32 (master weights that
keep lr 3e-5-sized updates, which bf16's 8-bit mantissa would round away); the forward runs under
bf16 autocast (tensor-core matmuls, float32 softmax/loss). On CPU everything is float32.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import lora  # noqa: E402
from minillama import Llama, MiniLlamaError, load_tokenizer  # noqa: E402
from minillama.progress import Progress  # noqa: E402
from scripts import checkpointing, data, ddp, demo_data, demo_model, plots  # noqa: E402
from scripts.train_config import (TrainConfig, TrainError, config_from_args, config_to_dict,  # noqa: E402
                                  resumed_config)


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Learning rate of optimiser step `step` (0-based): linear warm-up to the peak, then cosine decay."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.learning_rate * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def autocast_for(dtype: torch.dtype, device: torch.device):
    """A context factory: bf16 autocast for a bf16 base (fp32 LoRA weights), nothing for fp32."""
    if dtype == torch.bfloat16:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


class SummedNLL(torch.nn.Module):
    """Eq. 3's numerator on a micro-batch, as one module around the causal LM (what DDP and
    torch.compile wrap): the sum over sequences of (sum of target-token NLL) for "token", or of (mean
    target-token NLL of the sequence) for "sequence".

    The vocabulary projection runs only at positions that predict a target (the response tokens
    unless train_on_inputs), so the prompt never costs an lm_head matmul or a row of [.., vocab]
    logits. `lm` is any model with HF Llama's `.model` (backbone) and `.lm_head`.
    """

    def __init__(self, lm: torch.nn.Module, loss_norm: str = "token"):
        super().__init__()
        self.lm, self.loss_norm = lm, loss_norm

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Shapes: ids, labels [B, T] -> scalar."""
        targets = F.pad(labels[:, 1:], (0, 1), value=data.IGNORE_INDEX)  # [B, T]: position t predicts t+1
        keep = targets != data.IGNORE_INDEX  # [B, T]
        hidden = self.lm.model(ids)  # [B, T, d]
        logits = self.lm.lm_head(hidden[keep]).float()  # [N, V], N = target tokens of the micro-batch
        nll = F.cross_entropy(logits, targets[keep], reduction="none")  # [N]: -log P(x_t | x_<t), Eq. 3
        if self.loss_norm == "token":
            return nll.sum()
        rows = keep.nonzero()[:, 0]  # [N]: the sequence of each target
        per_seq = torch.zeros(ids.shape[0], dtype=nll.dtype, device=nll.device).index_add_(0, rows, nll)  # [B]
        return (per_seq / keep.sum(1).clamp(min=1)).sum()  # Eq. 3 per sequence, summed over the batch


def loss_denominator(batch: list[dict], loss_norm: str) -> int:
    """Target tokens ("token") or sequences ("sequence") of a global batch: what its loss is divided by."""
    return sum(e["n_targets"] for e in batch) if loss_norm == "token" else len(batch)


def global_batch(step: int, examples: list[dict], batch_size: int, seed: int) -> list[dict]:
    """The examples of optimiser step `step`: a slice of epoch `step // steps_per_epoch`'s shuffle."""
    per_epoch = math.ceil(len(examples) / batch_size)
    epoch, i = divmod(step, per_epoch)
    order = data.epoch_order(len(examples), seed, epoch)
    return [examples[j] for j in order[i * batch_size:(i + 1) * batch_size]]


def my_micro_batches(batch: list[dict], cfg: TrainConfig, info: ddp.DistInfo) -> list[list[dict]]:
    """This rank's contiguous share of the global batch, cut into micro-batches.

    A rank left empty by a short last batch gets one all-masked dummy row, so every rank joins the
    gradient all-reduce; its loss is exactly 0 and adds nothing.
    """
    share = cfg.batch_size // info.world_size
    mine = batch[info.rank * share:(info.rank + 1) * share]
    micro = [mine[i:i + cfg.micro_batch_size] for i in range(0, len(mine), cfg.micro_batch_size)]
    return micro or [[{"input_ids": [0, 0], "labels": [data.IGNORE_INDEX] * 2, "n_targets": 0}]]


@torch.no_grad()
def evaluate(model, examples: list[dict], cfg: TrainConfig, info: ddp.DistInfo, autocast) -> float:
    """Validation loss: Eq. 3 over all held-out target tokens (or the mean over sequences), all ranks."""
    model.eval()
    mine = examples[info.rank::info.world_size]
    total = 0.0
    for i in range(0, len(mine), cfg.micro_batch_size):
        ids, labels = data.collate(mine[i:i + cfg.micro_batch_size])
        with autocast():
            total += model(ids.to(info.device), labels.to(info.device)).item()
    total, denom = ddp.all_reduce_sum([total, loss_denominator(mine, cfg.loss_norm)], info)
    return total / max(denom, 1)


def train_loop(cfg, info, model, raw_model, optimizer, train_ex, val_ex, run, state, total_steps, log) -> bool:
    """Optimise from `state["step"]` to `total_steps`; returns False if stopped early by stop_after_steps."""
    autocast = autocast_for(raw_model.dtype, info.device)
    params = [p for p in raw_model.parameters() if p.requires_grad]
    bar = Progress(total=total_steps, initial=state["step"], desc="train", unit="step", disable=not info.is_main)
    for step in range(state["step"], total_steps):
        t0, lr = time.perf_counter(), lr_at(step, cfg, total_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = global_batch(step, train_ex, cfg.batch_size, cfg.seed)
        scale = info.world_size / max(1, loss_denominator(batch, cfg.loss_norm))  # DDP averages over ranks
        micro, loss_sum = my_micro_batches(batch, cfg, info), 0.0
        model.train()
        for j, mb in enumerate(micro):
            ids, labels = (t.to(info.device) for t in data.collate(mb))
            with ddp.no_sync(model, skip=j < len(micro) - 1):
                with autocast():
                    nll = model(ids, labels)
                (nll * scale).backward()
            loss_sum += nll.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm).item()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss = ddp.all_reduce_sum([loss_sum], info)[0] * scale / info.world_size
        tokens, seconds = sum(len(e["input_ids"]) for e in batch), time.perf_counter() - t0
        state.update(step=step + 1, tokens_seen=state["tokens_seen"] + tokens)
        log({"type": "train", "step": step + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm,
             "tokens": tokens, "tokens_per_s": tokens / seconds})
        bar.update(1, loss=loss, lr=lr, tok_s=round(tokens / seconds))
        last = step + 1 == total_steps
        if val_ex and ((step + 1) % cfg.eval_steps == 0 or last):
            val = evaluate(model, val_ex, cfg, info, autocast)
            log({"type": "val", "step": step + 1, "loss": val})
            if state["best_val_loss"] is None or val < state["best_val_loss"]:
                state.update(best_val_loss=val, best_step=step + 1)
                if info.is_main:
                    lora.save_adapter(raw_model, run / "adapter", base_model_name_or_path=state["base"])
        stop = cfg.stop_after_steps > 0 and step + 1 == cfg.stop_after_steps and not last
        if (step + 1) % cfg.save_steps == 0 or last or stop:
            rngs = ddp.gather_objects(checkpointing.rng_state(), info)
            if info.is_main:
                checkpointing.save_checkpoint(run, step + 1, raw_model, optimizer, state, rngs, state["base"],
                                              cfg.keep_checkpoints)
        if stop:
            bar.close()
            return False
    bar.close()
    return True


def load_base(cfg: TrainConfig, run: Path, info: ddp.DistInfo, dtype: torch.dtype):
    """The base model with LoRA applied (seeded init), its tokenizer, and its name for adapter_config."""
    base = str(run / "base") if cfg.base == "demo" else cfg.base
    if cfg.base == "demo" and info.is_main and not (run / "base" / "config.json").is_file():
        recs = json.loads((run / "demo_data.json").read_text())
        demo_model.build_demo_base(run / "base", recs, cfg.demo_pretrain_steps, seed=cfg.seed)
    ddp.barrier(info)
    check_base(base)
    tok = load_tokenizer(base)
    model = Llama.from_pretrained(base, dtype=dtype, device=info.device)
    torch.manual_seed(cfg.seed)
    lora.apply_lora(model, lora.LoraConfig(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                                           target_modules=tuple(cfg.lora_target_modules)))
    if cfg.activation_checkpointing:
        model.gradient_checkpointing_enable()
    return model, tok, base


HF_LICENCE = ("accept the Llama 2 licence on https://huggingface.co/{repo}, then `huggingface-cli login` (or set "
              "HF_TOKEN), or pass --base PATH to a local copy")


def check_hub_access(repo_id: str) -> None:
    """Fail in one line when a Hub model cannot be downloaded: no network, gated (the way to get access),
    no such repo. One short probe, no retry loop; nothing is written."""
    from scripts.train_run import hub_access_message, hub_problem

    problem = hub_problem(repo_id)
    if problem:
        raise TrainError(hub_access_message(repo_id, *problem, HF_LICENCE.format(repo=repo_id), "pass --base DIR"))


def check_base(base: str) -> None:
    """A base that is neither "demo" nor a local folder must be a reachable Hub id (`org/name`)."""
    if base == "demo" or Path(base).expanduser().is_dir():
        return
    if base.startswith((".", "/", "~")) or base.count("/") != 1:
        raise TrainError(f"{base}: base model folder not found")
    check_hub_access(base)


def preflight(cfg: TrainConfig, info: ddp.DistInfo) -> None:
    """The cheap checks that need no run folder, done before anything is written into it: the batch
    split over processes, the base model, and the dataset (exists, has usable records)."""
    if cfg.batch_size % (cfg.micro_batch_size * info.world_size):
        raise TrainError(f"config: batch_size {cfg.batch_size} is not a multiple of micro_batch_size x processes "
                         f"= {cfg.micro_batch_size * info.world_size}")
    check_base(cfg.base)
    if cfg.data != "demo":
        data.usable_records(data.resolve_dataset(cfg.data), cfg.on_bad_record)


def main(argv: list[str] | None = None) -> Path:
    """Run (or resume) a fine-tuning run; returns the run folder."""
    cfg, args, explicit = config_from_args(argv)
    run = Path(cfg.out).expanduser()
    if args.resume:
        cfg = resumed_config(read_run_config(run), explicit, str(run / "config.json"))
    info = ddp.setup(cfg.device)
    try:
        return _run(cfg, args, run, info)
    finally:
        ddp.teardown(info)


def read_run_config(run: Path) -> dict:
    """The config.json of a run that has a checkpoint to resume from."""
    if checkpointing.latest_checkpoint(run) is None:
        raise TrainError(f"{run}: no checkpoint to resume from (checkpoints/step_*/state.json)")
    try:
        return json.loads((run / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TrainError(f"{run / 'config.json'}: cannot read the run's config ({e})") from None


def _run(cfg: TrainConfig, args, run: Path, info: ddp.DistInfo) -> Path:
    """Check, then train into `run`; a run folder this call created is removed again if a failure
    leaves it empty."""
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    created = not run.exists()
    try:
        return _train(cfg, args, run, info)
    except BaseException:
        if created and info.is_main and run.is_dir() and not any(run.iterdir()):
            run.rmdir()
        raise


def _train(cfg: TrainConfig, args, run: Path, info: ddp.DistInfo) -> Path:
    if not (args.resume and (run / "DONE").is_file()):  # a finished run resumed needs nothing checked
        preflight(cfg, info)
    error = None
    if info.is_main:
        try:
            checkpointing.prepare_run_dir(run, args.resume, args.force)
        except TrainError as e:
            error = str(e)
    error = ddp.broadcast_object(error, info)
    if error:
        raise TrainError(error)
    if (run / "DONE").is_file():
        print(f"{run}: this run has finished already (DONE)", file=sys.stderr)
        return run
    if cfg.data == "demo" and info.is_main and not (run / "demo_data.json").is_file():
        demo_data.write_demo_dataset(run / "demo_data.json", cfg.demo_records, seed=cfg.seed)
    dtype = torch.bfloat16 if cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and info.device.type == "cuda") \
        else torch.float32
    raw_model, tok, base = load_base(cfg, run, info, dtype)
    train_ex, val_ex, report = data.prepare(cfg, run, tok, write=info.is_main)
    optimizer = torch.optim.AdamW([p for p in raw_model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                                  weight_decay=cfg.weight_decay, fused=info.device.type == "cuda")
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.num_epochs * math.ceil(len(train_ex) / cfg.batch_size))
    state = {"step": 0, "tokens_seen": 0, "best_val_loss": None, "best_step": 0, "base": base}
    if args.resume:
        state = checkpointing.load_checkpoint(checkpointing.latest_checkpoint(run), raw_model, optimizer,
                                              info.rank, info.world_size)
    elif info.is_main:
        resolved = {"base_path": base, "data_path": report["file"], "data_sha256": report["sha256"],
                    "world_size": info.world_size, "device": str(info.device), "dtype": str(dtype),
                    "train_records": len(train_ex), "val_records": len(val_ex), "total_steps": total_steps,
                    "lora": str(lora.trainable_summary(raw_model)), "torch": torch.__version__}
        (run / "config.json").write_text(json.dumps({**config_to_dict(cfg), "resolved": resolved}, indent=1) + "\n")
    loss_module = SummedNLL(raw_model, cfg.loss_norm)
    model = ddp.wrap(torch.compile(loss_module) if cfg.compile else loss_module, info)
    log = checkpointing.metrics_logger(run / "metrics.jsonl", state["step"], info.is_main)
    if state["step"] == 0 and val_ex:
        log({"type": "val", "step": 0, "loss": evaluate(model, val_ex, cfg, info, autocast_for(dtype, info.device))})
    if not train_loop(cfg, info, model, raw_model, optimizer, train_ex, val_ex, run, state, total_steps, log):
        print(f"{run}: stopped after step {state['step']} (checkpoint written; continue with --resume)", file=sys.stderr)
        return run
    if info.is_main:
        finish(cfg, run, raw_model, tok, state)
    ddp.barrier(info)
    return run


def finish(cfg: TrainConfig, run: Path, model, tok, state: dict) -> None:
    """adapter_last/, adapter/ (if no validation picked one), loss.png, the demo comparison, DONE."""
    lora.save_adapter(model, run / "adapter_last", base_model_name_or_path=state["base"])
    if not (run / "adapter").is_dir():
        lora.save_adapter(model, run / "adapter", base_model_name_or_path=state["base"])
    print(plots.plot_loss(run / "metrics.jsonl", run / "loss.png"), file=sys.stderr)
    if cfg.base == "demo" and cfg.demo_eval:
        split = json.loads((run / "split.json").read_text())
        records, _ = data.load_records(run / "demo_data.json")
        held_out = [records[i] for i in split["val_ids"]]
        base_model = Llama.from_pretrained(run / "base")
        tuned = lora.load_adapter(Llama.from_pretrained(run / "base"), run / "adapter")
        result = demo_model.compare_base_and_tuned(base_model, tuned, tok, held_out, split["val_ids"], cfg.template)
        (run / "demo_eval.json").write_text(json.dumps(result, indent=1) + "\n")
        base_r, tuned_r = result["base"], result["finetuned"]
        print(f"demo, {result['n']} held-out pairs: unigram F1 base {base_r['mean_f1']:.3f} -> fine-tuned "
              f"{tuned_r['mean_f1']:.3f}; right condition named {base_r['condition_accuracy']:.0%} -> "
              f"{tuned_r['condition_accuracy']:.0%}", file=sys.stderr)
    print(f"best validation loss {state['best_val_loss']} at step {state['best_step']}; run folder {run}",
          file=sys.stderr)
    (run / "DONE").write_text(json.dumps({"step": state["step"], "best_val_loss": state["best_val_loss"],
                                          "best_step": state["best_step"]}) + "\n")


def cli(argv: list[str] | None = None) -> int:
    """Console entry: one `error: ...` line and exit status 1 on a user-facing error."""
    try:
        main(argv)
    except (TrainError, MiniLlamaError, lora.LoraError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
