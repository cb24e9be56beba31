"""The fine-tuning configuration: one dataclass, its presets, and the CLI flags that mirror it.

Field defaults are the fine-tuning defaults of alpaca-lora's `finetune.py`, from which ChatDoctor's
`train_lora.py` derives (and of the Hugging Face `Trainer` those scripts call, for what they leave to
it), except where a comment says otherwise. The presets override them:

- `demo` (the default when no `--preset` is given): a tiny Llama the demo builds itself, on data the
  demo generates, on the CPU in a few minutes (see `docs/training.md`).
- `paper`: the paper's section 4.3 run (Llama-2-7b-chat, GenMedGPT-5k, 120 held out, lr 3e-5, 1 epoch,
  batch 1, micro-batch 1, cutoff_len 256, bf16).
- `none`: the field defaults below; pass `--data` and `--base` yourself.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from dataclasses import dataclass


class TrainError(Exception):
    """A user-facing training error; the CLI prints it as one `error: ...` line."""


@dataclass
class TrainConfig:
    """Every knob of a fine-tuning run; `config.json` in the run folder is this, resolved."""

    # --- what to train ---
    base: str = ""  # base model: Hub id or local folder (HF layout); "demo" = build the demo's tiny Llama
    data: str = ""  # dataset: a path (JSON list or JSONL), or "genmedgpt-5k" to download the public file
    template: str = "alpaca"  # alpaca-lora/ChatDoctor train on the alpaca prompt
    on_bad_record: str = "skip"  # malformed records: "skip" them (reported) or "stop" at the first
    out: str = "runs/demo"  # the run folder (never overwritten without --resume or --force)
    # --- data processing ---
    cutoff_len: int = 256  # alpaca-lora default; also the paper's cutoff_len
    train_on_inputs: bool = False  # False = loss on response tokens only, as the paper's Sec. 3.3 says (ChatDoctor: True)
    val_size: int = 120  # the paper holds out 120 pairs (alpaca-lora/ChatDoctor: 2000)
    seed: int = 42  # ChatDoctor's split seed; also seeds shuffling, LoRA init and dropout
    # --- LoRA (Hu et al. 2021); the paper does not state r/alpha/dropout/targets: alpaca-lora's values ---
    lora_r: int = 8  # alpaca-lora default rank
    lora_alpha: int = 16  # alpaca-lora default scale numerator (scale = alpha / r)
    lora_dropout: float = 0.05  # alpaca-lora default
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # all attention (ChatDoctor: PEFT's q,v)
    # --- optimisation ---
    learning_rate: float = 3e-4  # alpaca-lora default (the paper preset uses 3e-5)
    batch_size: int = 128  # global batch (sequences per optimiser step); alpaca-lora default
    micro_batch_size: int = 4  # sequences per forward pass; alpaca-lora default
    num_epochs: float = 3.0  # alpaca-lora default; ignored when max_steps > 0
    max_steps: int = 0  # > 0: stop after this many optimiser steps instead of epochs
    warmup_steps: int = 100  # alpaca-lora default (linear warm-up), then cosine decay
    min_lr_ratio: float = 0.0  # cosine decays to learning_rate * this (HF's cosine schedule: 0)
    adam_beta1: float = 0.9  # torch/HF AdamW default (Llama pretraining also used 0.9)
    adam_beta2: float = 0.999  # torch/HF AdamW default (Llama pretraining used 0.95, Touvron et al. 2023)
    adam_eps: float = 1e-8  # torch/HF AdamW default
    weight_decay: float = 0.0  # HF Trainer default (Llama pretraining used 0.1)
    max_grad_norm: float = 1.0  # HF Trainer default clipping norm (Llama pretraining: 1.0)
    loss_norm: str = "token"  # "token": sum NLL / target tokens of the global batch; "sequence": mean of per-sequence Eq. 3
    # --- evaluation and saving ---
    eval_steps: int = 200  # alpaca-lora default; validation loss every N steps and at the end
    save_steps: int = 200  # alpaca-lora default; checkpoint every N steps (and at the end)
    keep_checkpoints: int = 2  # older checkpoints are deleted (alpaca-lora keeps 3 HF ones)
    stop_after_steps: int = 0  # > 0: checkpoint and exit after this step without DONE (split a run; tests)
    # --- hardware ---
    device: str = "auto"  # "auto" = cuda if available else cpu
    dtype: str = "auto"  # "auto" = bf16 base + fp32 LoRA with bf16 autocast on GPU, fp32 on CPU
    activation_checkpointing: bool = False  # recompute each decoder layer in backward: less memory, ~30% slower
    compile: bool = False  # torch.compile the model (GPU; slow first steps)
    num_threads: int = 0  # > 0: torch.set_num_threads (CPU)
    # --- demo only ---
    demo_records: int = 600  # size of the generated demo dataset
    demo_pretrain_steps: int = 600  # full-parameter warm-up of the demo base on generic text (see demo_model.py)
    demo_eval: bool = True  # after training, greedy-generate the held-out pairs with base and fine-tuned

    def validate(self) -> None:
        """Raise `TrainError` naming the first inconsistent field."""
        checks = [
            (self.template in ("alpaca", "llama2-chat"), f"template must be alpaca or llama2-chat, got {self.template!r}"),
            (self.on_bad_record in ("skip", "stop"), f"on_bad_record must be skip or stop, got {self.on_bad_record!r}"),
            (self.loss_norm in ("token", "sequence"), f"loss_norm must be token or sequence, got {self.loss_norm!r}"),
            (self.dtype in ("auto", "float32", "bfloat16"), f"dtype must be auto, float32 or bfloat16, got {self.dtype!r}"),
            (self.cutoff_len >= 2, "cutoff_len must be at least 2"),
            (self.micro_batch_size >= 1, "micro_batch_size must be >= 1"),
            (self.batch_size % self.micro_batch_size == 0, "batch_size must be a multiple of micro_batch_size"),
            (self.val_size >= 0, "val_size must be >= 0"),
            (self.max_steps > 0 or self.num_epochs > 0, "give num_epochs > 0 or max_steps > 0"),
            (self.eval_steps >= 1 and self.save_steps >= 1, "eval_steps and save_steps must be >= 1"),
            (bool(self.base) and bool(self.data), "give --base and --data (or a --preset)"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainError(f"config: {message}")


PRESETS: dict[str, dict] = {
    "none": {},
    "demo": dict(
        base="demo", data="demo", out="runs/demo", template="alpaca", cutoff_len=192, val_size=40,
        learning_rate=1e-2, batch_size=8, micro_batch_size=8, num_epochs=3.0, warmup_steps=10,
        eval_steps=25, save_steps=50, lora_dropout=0.05, seed=42,
    ),
    "paper": dict(
        base="meta-llama/Llama-2-7b-chat-hf", data="genmedgpt-5k", out="runs/paper", template="alpaca",
        val_size=120, learning_rate=3e-5, num_epochs=1.0, batch_size=1, micro_batch_size=1, cutoff_len=256,
        lora_r=8, lora_alpha=16, lora_dropout=0.05, dtype="auto",
    ),
}


CHOICES = {"template": ("alpaca", "llama2-chat"), "on_bad_record": ("skip", "stop"),
           "loss_norm": ("token", "sequence"), "dtype": ("auto", "float32", "bfloat16")}


def field_comments() -> dict[str, str]:
    """Each field's reason comment in the `TrainConfig` source, reused as its `--help` text."""
    source = inspect.getsource(TrainConfig)
    return {m[1]: m[2] for m in re.finditer(r"^\s+(\w+): [^\n]*?  # ([^\n]*)$", source, re.M)}


def build_parser() -> argparse.ArgumentParser:
    """CLI: `--preset` plus one flag per `TrainConfig` field (underscores become dashes)."""
    p = argparse.ArgumentParser(prog="train.py", description="LoRA fine-tuning of a Llama on instruction data.",
                                epilog="Presets: demo (default; CPU, offline), paper (Sec. 4.3), none (field "
                                       "defaults, give --base and --data). See docs/training.md.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="starting values (default: demo)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    again.add_argument("--force", action="store_true", help="delete the run folder's previous results first")
    p.add_argument("--dataset", dest="data", help="alias of --data (e.g. --dataset genmedgpt-5k)")
    helps = field_comments()
    for f in dataclasses.fields(TrainConfig):
        flag, text = "--" + f.name.replace("_", "-"), helps.get(f.name, "").replace("%", "%%")
        if f.name == "learning_rate":
            p.add_argument(flag, "--lr", dest=f.name, type=float, default=None, help=text)
        elif isinstance(f.default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif f.name == "lora_target_modules":
            p.add_argument(flag, dest=f.name, default=None, help="comma-separated; " + text)
        else:
            p.add_argument(flag, dest=f.name, type=type(f.default), default=None, choices=CHOICES.get(f.name),
                           help=text)
    return p


# Fields that only say how to run, not what is trained: a resumed run may change them.
RUNTIME_FIELDS = ("stop_after_steps", "device", "num_threads", "compile", "activation_checkpointing", "demo_eval")


def config_from_args(argv: list[str] | None) -> tuple[TrainConfig, argparse.Namespace, dict]:
    """Parse `argv`: preset values first, then every flag given explicitly.

    Returns:
        (config, parsed args, {field: value} of the flags given explicitly).
    """
    args = build_parser().parse_args(argv)
    values = dict(PRESETS[args.preset])
    explicit = {}
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            if f.name == "lora_target_modules":
                v = tuple(s.strip() for s in v.split(",") if s.strip())
            values[f.name] = explicit[f.name] = v
    cfg = TrainConfig(**values)
    if cfg.base == "demo" and cfg.data != "demo":
        raise TrainError("config: the demo base only fits the demo data; give --base with --data")
    cfg.validate()
    return cfg, args, explicit


def resumed_config(saved: dict, explicit: dict, source: str) -> TrainConfig:
    """The saved run's config with only the runtime fields taken from explicit flags."""
    cfg = config_from_dict(saved)
    for name, value in explicit.items():
        if name in RUNTIME_FIELDS:
            setattr(cfg, name, value)
        elif name != "out" and value != getattr(cfg, name):
            raise TrainError(f"{source}: --{name.replace('_', '-')} {value!r} differs from the run's "
                             f"{getattr(cfg, name)!r}; a resumed run keeps its config (start a new --out)")
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict:
    """JSON-ready dict of the config (tuples become lists)."""
    d = dataclasses.asdict(cfg)
    d["lora_target_modules"] = list(cfg.lora_target_modules)
    return d


def config_from_dict(d: dict) -> TrainConfig:
    """Inverse of `config_to_dict` (unknown keys are ignored)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in d.items() if k in names}
    if "lora_target_modules" in values:
        values["lora_target_modules"] = tuple(values["lora_target_modules"])
    return TrainConfig(**values)


__all__ = ["TrainConfig", "TrainError", "PRESETS", "RUNTIME_FIELDS", "build_parser", "config_from_args",
           "config_to_dict", "config_from_dict", "resumed_config"]
