"""Config fields that declare their own command-line flag: one place for a field's default, help and check.

    @dataclass
    class ScoreConfig:
        rouge_beta: float = knob(1.0, "ROUGE F-measure beta", check=(lambda v: v > 0, "> 0"))

    add_flags(parser, ScoreConfig)            # --rouge-beta, typed, with its help and default
    cfg = from_args(ScoreConfig, args)        # the parsed flags as the dataclass
    check_fields(cfg, EvalkitError)           # "--rouge-beta: must be > 0, got -1"

A field's flag is `--name-with-dashes`; a bool whose default is True is turned off by the flag its knob
names (e.g. `flag="--no-figures"`). `TrainConfig` (lora/finetune/config.py) declares its fields the same way.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import field
from typing import Callable


def knob(default, help: str, choices: tuple[str, ...] | None = None, runtime: bool = False,
         check: tuple[Callable, str] | None = None, flag: str | None = None, type: Callable | None = None,
         env: str | None = None, metavar: str | None = None):
    """A config field with its `--help` text.

    Args:
        default: the field's default.
        help: the flag's help (and the field's documentation).
        choices: the values allowed, if a closed set.
        runtime: the field may change when a training run is resumed (`TrainConfig`).
        check: (test, rule in words): `check_fields` refuses a value the test rejects as "must be <rule>".
        flag: the flag's spelling when not `--name-with-dashes` (e.g. "--no-figures" for a True bool).
        type: the flag's value parser when the default does not say it (a None default).
        env: the flag's default is this environment variable when set (`from_args`), else `default`.
        metavar: the flag's value name in `--help`.
    """
    return field(default=default, metadata={"help": help, "choices": choices, "runtime": runtime, "check": check,
                                            "flag": flag, "type": type, "env": env, "metavar": metavar})


def flag_of(f: dataclasses.Field) -> str:
    """The field's flag: its knob's `flag`, else `--name-with-dashes`."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, cls, only: tuple[str, ...] | None = None,
              skip: tuple[str, ...] = ()) -> None:
    """One flag per knob field of `cls` (those in `only` when given, never those in `skip`)."""
    for f in dataclasses.fields(cls):
        if "help" not in f.metadata or f.name in skip or (only is not None and f.name not in only):
            continue
        m = f.metadata
        if isinstance(f.default, bool):
            parser.add_argument(flag_of(f), dest=f.name, action="store_false" if f.default else "store_true",
                                help=m["help"])
            continue
        default = None if m["env"] else f.default
        parser.add_argument(flag_of(f), dest=f.name, type=m["type"] or type(f.default), default=default,
                            choices=m["choices"], metavar=m["metavar"], help=m["help"])


def from_args(cls, args: argparse.Namespace, **values):
    """`cls` from the parsed flags of its fields (an `env` field: the flag, else the variable, else the default);
    `values` are given as they are (fields without a flag)."""
    for f in dataclasses.fields(cls):
        if f.name in values or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if f.metadata.get("env") and value is None:
            value = os.environ.get(f.metadata["env"]) or f.default
        values[f.name] = value
    return cls(**values)


def check_fields(obj, error: type[Exception], cls=None) -> None:
    """Raise `error("--flag: must be <rule>, got <value>")` for the first field whose knob's check fails; `obj` is
    the dataclass, or the parsed flags of `cls` (checked before `cls` is built)."""
    for f in dataclasses.fields(cls or obj):
        check, value = f.metadata.get("check"), getattr(obj, f.name)
        if check and not check[0](value):
            raise error(f"{flag_of(f)}: must be {check[1]}, got {value}")
        if f.metadata.get("choices") and value is not None and value not in f.metadata["choices"]:
            raise error(f"{flag_of(f)}: must be one of {', '.join(f.metadata['choices'])}, got {value!r}")


def at_least(low) -> tuple[Callable, str]:
    """A `check` for a number >= `low` (None allowed: an unset optional value)."""
    return (lambda v: v is None or v >= low), f">= {low}"
