"""Configuration of `scripts/reproduce.py`: presets `demo`, `paper` and `smollm2`, overridable by a JSON file.

A config file is plain JSON with the same keys as `ReproduceConfig`: each section is a typed config and its keys
are that dataclass's fields (`train`: `TrainConfig`, `score`: `ScoreConfig`, `score_options`: `RunOptions`,
`judge.config`: `JudgeConfig`, `judge.options`: `JudgeOptions`); only the keys it names override the preset:

    {"preset": "smollm2", "train": {"max_steps": 20, "lora_r": 8},
     "generation": {"max_new_tokens": 32, "limit": 16},
     "score_options": {"keep_truncated": true, "bootstrap": 2000},
     "judge": {"base_url": "http://127.0.0.1:8000/v1", "model": "llama3", "options": {"limit": 20}}}

Nothing in it is executed and there are no dotted keys: an unknown key or a value of the wrong type
is refused with one line naming the file and the key. Files of the old way (`train_args`, `evalkit_args`,
`judge.args`: flag lists) still load, through the commands' parsers, with one line giving the typed keys.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from evalkit import RunOptions, ScoreConfig
from judge.llm.commands import JudgeOptions
from judge.llm.config import JudgeConfig
from lora.finetune.config import TrainConfig, preset_values
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
        model: judge model name sent to the endpoint (None: $JUDGE_MODEL, else gpt-4o; the stand-in: standin).
        standin: start the project's loopback stand-in judge (`judge.standin`) for this run: it
            checks the plumbing end to end offline; its scores are synthetic, not a judgment.
        config: the judge's sampling and limits (`JudgeConfig`'s fields but base_url, model and api_key,
            which are the two above and OPENAI_API_KEY), e.g. {"concurrency": 4, "seed": 1}.
        options: what is judged and reported (`JudgeOptions`), e.g. {"limit": 20, "repeats": 3}.
    """

    base_url: str | None = None
    model: str | None = None
    standin: bool = False
    config: JudgeConfig = field(default_factory=JudgeConfig)
    options: JudgeOptions = field(default_factory=JudgeOptions)


# Keys of a section that a config file may not set: the pipeline sets them (train.out: RUN_DIR/train) or they
# are set elsewhere (the judge's endpoint and model: judge.base_url and judge.model; its key: OPENAI_API_KEY).
NOT_IN_FILE = {"train.out": "the run folder's train/ (set run_dir)", "judge.config.base_url": "judge.base_url",
               "judge.config.model": "judge.model", "judge.config.api_key": "the OPENAI_API_KEY variable"}
# The old way: flag lists read by the commands' parsers (still loaded, with one line saying the new way).
LEGACY_KEYS = ("train_args", "evalkit_args", "judge.args", "base_model")


@dataclass
class ReproduceConfig:
    """Everything `scripts/reproduce.py` does, in one place (saved as `pipeline.json` in the run).

    Attributes:
        preset: "demo" (CPU, offline, minutes), "paper" (section 4.3, one GPU, gated weights) or "smollm2"
            (the paper's experiment on SmolLM2-135M-Instruct, CPU, offline).
        full: with smollm2, the paper's full protocol (one epoch; `lora.finetune.config.SMOLLM2_FULL`).
        run_dir: the run folder every stage writes into.
        train: the training run (`TrainConfig`: the preset's values, the file's `train` keys on top; its
            `out` is always RUN_DIR/train).
        train_run: a finished training run folder to use instead of training (skips stage 1); a
            relative path is taken from the current directory (like `--train-run`), not from the
            config file's folder.
        generation: decoding settings (see `GenerationSettings`).
        score: how Track A computes the metrics (`ScoreConfig`).
        score_options: exclusions and resampling of Track A and grounding (`RunOptions`).
        judge: Track B settings (see `JudgeSettings`).
        db: the disease database of the grounding stage: "chatdoctor" (the embedded copy, sha256-checked;
            "chatdoctor@download": the public file),
            "demo" (the demo's own table), a CSV path, or None to skip the stage.
        human_store: a Track C ratings store (`python -m judge.human serve --store`); None: Track C is
            not reported (the report says how to start it).
    """

    preset: str = "demo"
    full: bool = False
    run_dir: str = "runs/reproduce-demo"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**preset_values("demo"), demo_eval=False))
    train_run: str | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    score_options: RunOptions = field(default_factory=RunOptions)
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    db: str | None = None
    human_store: str | None = None

    @property
    def base_model(self) -> str | None:
        """The model training loads, checked for access before hours of work start (None: the demo's own)."""
        return None if self.train.base == "demo" else self.train.base

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in NOT_IN_FILE:
            *parents, name = key.split(".")
            section = d
            for parent in parents:
                section = section[parent]
            del section[name]
        return d


def preset(name: str, full: bool = False) -> ReproduceConfig:
    """The built-in presets. `paper` follows section 4.3; decoding is not given there (see docs). `smollm2` is the
    paper's experiment on SmolLM2-135M-Instruct (CPU, offline: the wheel's GGUF, the embedded data and database);
    `full=True` gives it the paper's whole training protocol (one epoch) in its own run folder. Training takes the
    training preset of the same name (`lora.finetune.config.PRESETS`), without its demo evaluation.

    Raises:
        ConfigError: an unknown preset, or `full` for a preset other than smollm2 (naming --full).
    """
    if full and name != "smollm2":
        raise ConfigError(f"--full: the paper's full protocol on SmolLM2; use it with --preset smollm2 (--preset "
                          f"{name} has none)")
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    train = TrainConfig(**{**preset_values(name, full), "demo_eval": False})
    if name == "smollm2":
        return ReproduceConfig(preset="smollm2", full=full, run_dir="runs/reproduce-smollm2" + ("-full" if full else ""),
                               db="chatdoctor", train=train,
                               # A chat model's answer may run past the cap: score it as the paper scores all 120.
                               score_options=RunOptions(keep_truncated=True),
                               generation=GenerationSettings(**SMOLLM2_GENERATION))
    if name == "demo":
        return ReproduceConfig(preset="demo", run_dir="runs/reproduce-demo", db="demo", train=train,
                               generation=GenerationSettings(max_new_tokens=64, batch_size=16,
                                                             dtype="float64", device="cpu"))
    return ReproduceConfig(preset="paper", run_dir="runs/reproduce-paper", db="chatdoctor", train=train,
                           generation=GenerationSettings(max_new_tokens=256, batch_size=8,
                                                         dtype="bfloat16", device="auto"))


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
    return config_from_dict(data, str(path), default_preset)


def config_from_dict(data, where: str, default_preset: str = "demo", hint: bool = True) -> ReproduceConfig:
    """The preset `data["preset"]` (else `default_preset`) with `data`'s keys on top; `where` names the source in
    errors. Keys of the old way (`LEGACY_KEYS`) are converted through the commands' parsers, with one stderr line
    (when `hint`) giving the same settings as typed keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a JSON object")
    name, full = data.get("preset", default_preset), data.get("full", False)
    if name not in PRESETS:
        raise ConfigError(f"{where}: preset: {name!r} is not one of {', '.join(PRESETS)}")
    if not isinstance(full, bool):
        raise ConfigError(f"{where}: full must be a bool, not {type(full).__name__}")
    try:
        base = preset(name, full)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    judge = data.get("judge")
    legacy = {k: data[k] for k in LEGACY_KEYS if k in data}
    if isinstance(judge, dict) and "args" in judge:
        legacy["judge.args"] = judge["args"]
        data = {**data, "judge": {k: v for k, v in judge.items() if k != "args"}}
    for old, new in (("train_args", ("train",)), ("evalkit_args", ("score", "score_options")),
                     ("judge.args", ("config", "options"))):
        if old in legacy and any(k in (judge if old == "judge.args" else data) for k in new):
            raise ConfigError(f"{where}: {old} and {' or '.join(new)}: give one way, the typed keys")
    cfg = merged(base, {k: v for k, v in data.items() if k not in legacy}, where)
    if legacy:
        cfg = from_flags(cfg, legacy, where)
        if hint:
            print(f"note: {where}: {', '.join(legacy)} is the old way (flag lists); the same settings as typed keys "
                  f"(docs/reproduce.md): {json.dumps(typed_keys(cfg, base))}", file=sys.stderr)
    return cfg


def merged(cfg, data: dict, where: str, prefix: str = ""):
    """A copy of the dataclass `cfg` with `data`'s keys on top (recursively), checking names, types and values."""
    known = {f.name: f for f in dataclasses.fields(cfg)}
    values = {}
    for key, value in data.items():
        name = prefix + key
        if key not in known or name in NOT_IN_FILE:
            instead = f" (set by {NOT_IN_FILE[name]})" if name in NOT_IN_FILE else ""
            raise ConfigError(f"{where}: unknown key {name!r}{instead} (known: "
                              f"{', '.join(sorted(k for k in known if prefix + k not in NOT_IN_FILE))})")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {name} must be an object")
            values[key] = merged(current, value, where, prefix=name + ".")
        else:
            values[key] = _checked(value, known[key], where, name)
    return dataclasses.replace(cfg, **values)


def _checked(value, f: dataclasses.Field, where: str, name: str):
    """`value` if it fits the field's type (judged from its annotation) and its knob's check, else a ConfigError."""
    ann = str(f.type)
    if value is None:
        if "None" in ann:
            return None
        raise ConfigError(f"{where}: {name} cannot be null")
    if ann.startswith("tuple"):
        kind, types = ("strings", str) if ann.startswith("tuple[str") else ("numbers", (int, float))
        if not (isinstance(value, list) and all(isinstance(v, types) and not isinstance(v, bool) for v in value)):
            raise ConfigError(f"{where}: {name} must be a list of {kind}")
        return tuple(value)
    for typename, types in (("bool", (bool,)), ("int", (int,)), ("float", (int, float)), ("str", (str,))):
        if ann.startswith(typename):
            if not isinstance(value, types) or (typename != "bool" and isinstance(value, bool)):
                raise ConfigError(f"{where}: {name} must be a {typename}, not {type(value).__name__}")
            value = float(value) if typename == "float" else value
            break
    else:  # pragma: no cover (every field's type is above)
        raise ConfigError(f"{where}: {name}: unsupported type {ann}")
    choices, check = f.metadata.get("choices"), f.metadata.get("check")
    if choices and value not in choices:
        raise ConfigError(f"{where}: {name} must be one of {', '.join(choices)}, got {value!r}")
    if check and not check[0](value):
        raise ConfigError(f"{where}: {name} must be {check[1]}, got {value}")
    return value


def from_flags(cfg: ReproduceConfig, legacy: dict, where: str) -> ReproduceConfig:
    """The old way's flag lists read by the commands' own parsers: `train_args` after the preset's training flags
    (`--preset NAME` first, never replaced), `evalkit_args` as `evalkit score`'s, `judge.args` as `judge run`'s.
    A bad flag is the command's own one-line error (`--learning-rate: must be > 0, got -1.0`)."""
    from evalkit.cli import parse_score_flags
    from judge.llm.cli import judge_config, judge_flags, judge_options
    from lora.finetune.flags import config_from_args

    def flags(key: str) -> list[str]:
        value = legacy.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{where}: {key} must be a list of strings")
        return value
    if legacy.get("base_model"):
        cfg.train = dataclasses.replace(cfg.train, base=legacy["base_model"])
    if "train_args" in legacy:
        preset_flags = ["--preset", cfg.preset, *(["--full"] if cfg.full else [])]
        if legacy.get("base_model"):
            preset_flags += ["--base", legacy["base_model"]]
        cfg.train = config_from_args(["--no-demo-eval", *preset_flags, *flags("train_args")])[0]
    if "evalkit_args" in legacy:
        cfg.score, cfg.score_options = parse_score_flags(flags("evalkit_args"))
    if "judge.args" in legacy:
        args = judge_flags(flags("judge.args"))
        model = cfg.judge.model or args.model
        args.base_url, args.model = "http://127.0.0.1:1/v1", "-"  # the endpoint is judge.base_url's
        config = dataclasses.replace(judge_config(args), api_key=None, base_url=JudgeConfig.base_url,
                                     model=JudgeConfig.model)
        cfg.judge = dataclasses.replace(cfg.judge, model=model, config=config, options=judge_options(args))
    return cfg


def typed_keys(cfg: ReproduceConfig, base: ReproduceConfig) -> dict:
    """The sections of `cfg` that differ from the preset `base`, as a config file writes them (what differs only)."""
    new, old = cfg.to_dict(), base.to_dict()

    def diff(a: dict, b: dict) -> dict:
        out = {}
        for k, v in a.items():
            if isinstance(v, dict):
                if diff(v, b[k]):
                    out[k] = diff(v, b[k])
            elif v != b[k]:
                out[k] = list(v) if isinstance(v, tuple) else v
        return out
    return {k: v for k, v in diff(new, old).items() if k in ("train", "score", "score_options", "judge")}
