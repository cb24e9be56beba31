"""`python -m lora merge`: fold a PEFT LoRA adapter into its base model and write a full HF checkpoint;
`python -m lora count`: the trainable parameter count of LoRA on a model, from its config alone.

    python -m lora merge --base meta-llama/Llama-2-7b-chat-hf --adapter runs/x/adapter --out merged/ \
        [--dtype auto|float32|bfloat16|float16] [--max-shard-size 2GB]
    python -m lora count [--config CONFIG_JSON_OR_DIR] [--r 8] [--target-modules q_proj,k_proj,v_proj,o_proj]

The output folder (config.json, generation_config.json, model.safetensors or shards + index, and the
base's tokenizer files) loads in transformers (`LlamaForCausalLM.from_pretrained`) and minillama (and is the plain HF
layout vLLM serves).
It is written under a temporary name and renamed when complete; an existing non-empty --out is refused.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from lora.adapter_io import read_adapter_config, read_adapter_tensors
from lora.errors import LoraError

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lora", description="LoRA adapter tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge", help="merge an adapter into its base model and save a full checkpoint")
    merge.add_argument("--base", required=True, help="base model folder or Hugging Face Hub id")
    merge.add_argument("--adapter", required=True, help="PEFT adapter folder (adapter_config.json + weights)")
    merge.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    merge.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                       help="dtype of the saved weights (auto: the base checkpoint's); the merge itself "
                            "is computed in float32 per layer and rounded once")
    merge.add_argument("--max-shard-size", default="2GB", help="largest safetensors shard, e.g. 2GB, 500MB")
    count = sub.add_parser("count", help="trainable / total parameters of LoRA on a model (no weights loaded)")
    count.add_argument("--config", default=None,
                       help="a model's config.json, or a folder holding one (default: Llama-2-7B's shapes)")
    count.add_argument("--r", type=int, default=8, help="LoRA rank (default 8)")
    count.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj",
                       help="comma-separated module names (default q_proj,k_proj,v_proj,o_proj)")
    return parser


def count(args: argparse.Namespace) -> None:
    """Print `trainable params: ... || all params: ... || trainable%: ...` for LoRA on the model's shapes."""
    import torch
    from minillama import Llama, LlamaConfig

    from lora.config import LoraConfig
    from lora.inject import apply_lora, trainable_summary

    lora_config = LoraConfig(r=args.r, target_modules=tuple(t.strip() for t in args.target_modules.split(",")))
    if args.config is None:
        config = LlamaConfig()  # its defaults are Llama-2-7B's
    else:
        path = Path(args.config)
        config = LlamaConfig.from_file(path / "config.json" if path.is_dir() else path)
    with torch.device("meta"):  # shapes only: no memory, no weights
        model = Llama(config)
    print(trainable_summary(apply_lora(model, lora_config)))


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LoraError(f"{out}: already exists and is not empty; refusing to overwrite it")


def _copy_tokenizer(base: str, dest: Path) -> list[str]:
    """Copy the base model's tokenizer files into `dest`; returns the names copied."""
    from minillama.checkpoint import resolve_model_dir  # the folder from_pretrained read (Hub cache for ids)

    base_dir = resolve_model_dir(base)
    copied = []
    for name in TOKENIZER_FILES:
        if (base_dir / name).is_file():
            shutil.copyfile(base_dir / name, dest / name)
            copied.append(name)
    return copied


def merge(args: argparse.Namespace) -> None:
    """Load base + adapter, merge, and write the merged checkpoint atomically to `args.out`."""
    from minillama import Llama

    from lora.adapter_io import load_adapter
    from lora.inject import lora_layers
    from lora.merge import merge_lora

    from minillama.save import parse_size

    out = Path(args.out)
    _check_out(out)
    parse_size(args.max_shard_size)  # a bad --max-shard-size fails here, not after the merge
    config = read_adapter_config(args.adapter)  # fail fast, before loading gigabytes
    read_adapter_tensors(args.adapter)
    model = Llama.from_pretrained(args.base, dtype=None if args.dtype == "auto" else args.dtype)
    load_adapter(model, args.adapter)
    n_layers = len(lora_layers(model))
    merge_lora(model, unload=True, progress=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        model.save_pretrained(tmp, max_shard_size=args.max_shard_size)
        copied = _copy_tokenizer(args.base, tmp)
        _check_out(out)  # nothing appeared there meanwhile
        if out.is_dir():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as exc:  # a full disk, a read-only folder: one line naming --out, exit status 1
        raise OSError(exc.errno, f"cannot write the merged checkpoint ({exc.strerror or exc}); nothing was "
                      f"left behind", str(out)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"merged {n_layers} LoRA layers (r={config.r}, alpha={config.alpha:g}) from {args.adapter} into "
          f"{args.base}; wrote {out} ({str(model.dtype).removeprefix('torch.')})")
    if "tokenizer.model" not in copied:
        print(f"note: the base {args.base} has no tokenizer.model; {out} has no tokenizer", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (docs/cli.md): 0 ok, 1 failure while running (a full disk
    while saving), 2 bad input or usage, 130 on SIGINT, 143 on SIGTERM; `error: ...` on stderr."""
    from minillama.errors import MiniLlamaError
    from minillama.jobcontrol import run_cli

    args = build_parser().parse_args(argv)

    def body() -> None:
        if args.command == "merge":
            merge(args)
        elif args.command == "count":
            count(args)

    return run_cli(body, handled=(LoraError, MiniLlamaError, OSError),
                   interrupted="interrupted; nothing was written to the output folder")
