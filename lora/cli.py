"""`python -m lora merge`: fold a PEFT LoRA adapter into its base model and write a full HF checkpoint;
`python -m lora count`: the trainable parameter count of LoRA on a model, from its config alone;
`python -m lora memory`: per-GPU memory of LoRA / QLoRA fine-tuning, from the config alone (lora/memory.py).

    python -m lora merge --base meta-llama/Llama-2-7b-chat-hf --adapter runs/x/adapter --out merged/ \
        [--dtype auto|float32|bfloat16|float16] [--max-shard-size 2GB] [--quantize nf4 [--no-double-quant]]
    python -m lora count [--model llama-2-7b|...|CONFIG_JSON|DIR|FILE.gguf|HUB_ID] [--r 8]
        [--target-modules q_proj,k_proj,v_proj,o_proj] [--use-dora]
    python -m lora memory --model llama-2-7b|llama-3.1-8b|...|CONFIG_JSON|DIR|FILE.gguf|HUB_ID [--gpus N] [--fsdp]
        [--quantize nf4] [--use-dora] [--json]

The output folder (config.json, generation_config.json, model.safetensors or shards + index, and the
base's tokenizer files) loads in transformers (`LlamaForCausalLM.from_pretrained`) and minillama (and is the plain HF
layout vLLM serves).
It is written under a temporary name and renamed when complete; an existing non-empty --out is refused.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from minillama.errors import MiniLlamaError
from plumbing.command import ArgumentParser, run_cli
from plumbing.durable import write_folder_atomic

from lora.adapter_io import read_adapter_config, read_adapter_tensors
from lora.errors import LoraError

# The base's tokenizer and generation files, copied into the merged folder as they are (after the check below).
TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja", "generation_config.json")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m lora", description="LoRA adapter tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge", help="merge an adapter into its base model and save a full checkpoint")
    merge.add_argument("--base", required=True, help="base model folder, .gguf file or Hugging Face Hub id")
    merge.add_argument("--adapter", required=True, help="PEFT adapter folder (adapter_config.json + weights)")
    merge.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    merge.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                       help="dtype of the saved weights (auto: the base checkpoint's); the merge itself "
                            "is computed in float32 per layer and rounded once")
    merge.add_argument("--max-shard-size", default="2GB", help="largest safetensors shard, e.g. 2GB, 500MB")
    merge.add_argument("--quantize", choices=["nf4"], default=None,
                       help="the adapter was trained on a 4-bit base (QLoRA): load the base in NF4 as in "
                            "training, merge into its dequantised weights, write dense weights (--dtype auto "
                            "means bfloat16)")
    merge.add_argument("--no-double-quant", action="store_true",
                       help="with --quantize nf4: the base was trained without double quantisation")
    merge.add_argument("--strict", action="store_true",
                       help="refuse (exit 2, nothing written) an adapter trained on another base than --base "
                            "(default: one warning line)")
    count = sub.add_parser("count", help="trainable / total parameters of LoRA on a model (no weights loaded)")
    models = ("llama-2-7b, llama-2-13b, llama-2-70b, llama-3.1-8b, llama-3.2-1b, llama-3.2-3b, mistral-7b, a "
              "config.json, a model folder, a llama.cpp .gguf file (its header is read), or a Hub id (only its "
              "config.json is downloaded)")
    which = count.add_mutually_exclusive_group()
    which.add_argument("--model", default=None, help=models + " (default: llama-2-7b)")
    which.add_argument("--config", default=None,
                       help="a model's config.json, a folder holding one, or a .gguf file (as --model)")
    count.add_argument("--r", type=int, default=8, help="LoRA rank (default 8)")
    count.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj",
                       help="comma-separated module names (default q_proj,k_proj,v_proj,o_proj)")
    count.add_argument("--use-dora", action="store_true", help="DoRA: add each adapted layer's magnitude vector")
    mem = sub.add_parser("memory", help="per-GPU memory of LoRA / QLoRA fine-tuning, from the config alone")
    mem.add_argument("--model", required=True, help=models)
    mem.add_argument("--gpus", type=int, default=1, help="GPUs (default 1); without --fsdp each holds a replica")
    mem.add_argument("--fsdp", action="store_true", help="shard base, LoRA and optimizer state over the GPUs (FSDP2)")
    mem.add_argument("--quantize", choices=["nf4"], default=None, help="4-bit NormalFloat base (QLoRA)")
    mem.add_argument("--no-double-quant", action="store_true", help="with --quantize nf4: float32 block constants")
    mem.add_argument("--r", type=int, default=8, help="LoRA rank (default 8)")
    mem.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj",
                     help="comma-separated projections (default q_proj,k_proj,v_proj,o_proj)")
    mem.add_argument("--batch", type=int, default=1, help="sequences per micro-batch per GPU (default 1)")
    mem.add_argument("--seq-len", type=int, default=None,
                     help="tokens per sequence (default 256, the paper's cutoff_len, or the model's context if shorter)")
    mem.add_argument("--no-dropout", action="store_true", help="LoRA dropout 0 (no dropout masks are kept)")
    mem.add_argument("--use-dora", action="store_true",
                     help="DoRA (Liu et al. 2024): the magnitude vectors and what their gradient keeps")
    mem.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return parser


def memory(args: argparse.Namespace) -> None:
    """Print the per-GPU memory table (or JSON) of `lora.memory.estimate`."""
    import json

    from lora.memory import PROJECTIONS, estimate
    from lora.memory_report import format_table, resolve_config

    targets = tuple(t.strip() for t in args.target_modules.split(",") if t.strip())
    for flag, value, ok in (("--gpus", args.gpus, args.gpus >= 1), ("--r", args.r, args.r >= 1),
                            ("--batch", args.batch, args.batch >= 1), ("--seq-len", args.seq_len, args.seq_len is None or args.seq_len >= 1)):
        if not ok:
            raise LoraError(f"{flag}: must be a positive integer, got {value}")
    bad = [t for t in targets if t not in PROJECTIONS]
    if bad or not targets:
        raise LoraError(f"--target-modules: {','.join(bad) or 'empty'} is not one of {','.join(PROJECTIONS)}")
    if args.fsdp and args.quantize:
        raise LoraError("--quantize nf4 with --fsdp: not supported (FSDP2 shards parameters; the NF4 base is "
                        "stored in buffers); run QLoRA with one process per GPU")
    _check_double_quant(args)
    config = resolve_config(args.model)
    if args.seq_len is None:  # Sec. 4.3's cutoff_len, unless the model's context is shorter
        args.seq_len = min(256, config.max_position_embeddings)
    elif args.seq_len > config.max_position_embeddings:
        raise LoraError(f"--seq-len: {args.seq_len} exceeds the model's context of {config.max_position_embeddings} "
                        f"positions (max_position_embeddings of {args.model})")
    est = estimate(config, gpus=args.gpus, fsdp=args.fsdp, quantize=args.quantize, r=args.r, targets=targets,
                   batch=args.batch, seq_len=args.seq_len, dropout=not args.no_dropout,
                   double_quant=not args.no_double_quant, dora=args.use_dora)
    summary = lora_summary(config, args.r, targets, args.use_dora)
    if args.json:
        print(json.dumps({"model": args.model, **est.to_json(), "trainable_params": summary.trainable,
                          "all_params": summary.total}, indent=2))
    else:
        head, *rows = format_table(est, args.model).split("\n")
        print("\n".join([head, f"  LoRA {summary}", *rows]))


def lora_summary(config, r: int, targets: tuple[str, ...], use_dora: bool = False):
    """`trainable params: ... || all params: ... || trainable%: ...` of LoRA on the model's shapes (meta device)."""
    import torch
    from minillama import Llama

    from lora.config import LoraConfig
    from lora.inject import apply_lora, trainable_summary

    with torch.device("meta"):  # shapes only: no memory, no weights
        model = Llama(config)
    return trainable_summary(apply_lora(model, LoraConfig(r=r, target_modules=targets, use_dora=use_dora)))


def count(args: argparse.Namespace) -> None:
    """Print `trainable params: ... || all params: ... || trainable%: ...` for LoRA on the model's shapes."""
    from lora.memory_report import resolve_config

    targets = tuple(t.strip() for t in args.target_modules.split(",") if t.strip())
    if args.r < 1:
        raise LoraError(f"--r: LoraConfig.r must be a positive integer, got {args.r}")
    if not targets:
        raise LoraError("--target-modules: give at least one module name")
    spec = args.model or args.config or "llama-2-7b"
    print(lora_summary(resolve_config(spec), args.r, targets, args.use_dora))


def _check_double_quant(args: argparse.Namespace) -> None:
    """`--no-double-quant` only means something for a 4-bit base: refused without `--quantize nf4`."""
    if args.no_double_quant and not args.quantize:
        raise LoraError("--no-double-quant: only with --quantize nf4 (it changes how the 4-bit base stores its "
                        "block constants)")


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LoraError(f"{out}: already exists and is not empty; refusing to overwrite it")


def _tokenizer_files(base_dir: Path, vocab_size: int) -> list[str]:
    """The tokenizer files of the base folder, checked: the tokenizer minillama reads from it
    (`load_tokenizer`: tokenizer.model, else tokenizer.json) loads and fits the model's `vocab_size`, every
    other JSON file is a JSON object, the chat template is UTF-8 text. A broken one is refused (LoraError
    naming it) before anything is loaded or written."""
    from minillama import load_tokenizer

    if base_dir.is_file():  # a .gguf file: its tokenizer is written from its metadata (`_gguf_tokenizer`)
        return []
    present = [name for name in TOKENIZER_FILES if (base_dir / name).is_file()]
    if {"tokenizer.model", "tokenizer.json"} & set(present):
        try:
            tokenizer = load_tokenizer(base_dir)  # tokenizer.json also reads tokenizer_config.json beside it
        except MiniLlamaError as exc:
            raise LoraError(f"{str(exc).splitlines()[0]} (the base's tokenizer; nothing was written)") from None
        if tokenizer.vocab_size > vocab_size:
            raise LoraError(f"{tokenizer.path}: the tokenizer has {tokenizer.vocab_size} tokens, the base model only "
                            f"{vocab_size}; nothing was written")
    for name in present:
        path = base_dir / name
        try:
            text = path.read_text(encoding="utf-8") if name != "tokenizer.model" else "{}"
            if name.endswith(".json") and not isinstance(json.loads(text), dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            raise LoraError(f"{path}: not a readable tokenizer file ({str(exc).splitlines()[0]}); nothing was "
                            "written") from None
    return present


def _gguf_tokenizer(path: Path, dest: Path) -> list[str]:
    """Write the tokenizer a .gguf file's metadata describes into `dest`, in Hugging Face's layout: a
    SentencePiece vocabulary as tokenizer.model, a byte-level one as tokenizer.json."""
    from minillama.gguf import read_gguf, sentencepiece_config, sentencepiece_proto, tokenizer_parts
    from plumbing.durable import write_bytes_atomic, write_json_atomic

    gguf = read_gguf(path)
    if gguf.metadata.get("tokenizer.ggml.model") == "llama":
        write_bytes_atomic(dest / "tokenizer.model", sentencepiece_proto(gguf))
        write_json_atomic(dest / "tokenizer_config.json", sentencepiece_config(gguf))
        return ["tokenizer.model", "tokenizer_config.json"]
    spec, config = tokenizer_parts(gguf)
    write_json_atomic(dest / "tokenizer.json", spec)
    write_json_atomic(dest / "tokenizer_config.json", {k: v for k, v in config.items() if v is not None})
    return ["tokenizer.json", "tokenizer_config.json"]


def _check_base(args: argparse.Namespace, base_dir: Path) -> None:
    """Warn in one line (refuse with --strict) when the adapter was trained on another base (`lora.base_check`)."""
    from lora.base_check import base_problem

    problem = base_problem(Path(args.adapter), args.base, base_dir)
    if problem and args.strict:
        raise LoraError(f"--adapter {args.adapter}: {problem} (refused by --strict; nothing was written)")
    if problem:
        print(f"warning: --adapter {args.adapter}: {problem} (--strict refuses it)", file=sys.stderr)


def merge(args: argparse.Namespace) -> None:
    """Load base + adapter, merge, and write the merged checkpoint atomically to `args.out`."""
    from minillama import Llama, LlamaConfig, load_tokenizer
    from minillama.load import resolve_model_dir

    from lora.adapter_io import load_adapter
    from lora.inject import lora_layers
    from lora.merge import merge_lora

    from minillama.save import parse_size

    out = Path(args.out)
    _check_out(out)
    _check_double_quant(args)
    parse_size(args.max_shard_size)  # a bad --max-shard-size fails here, not after the merge
    config = read_adapter_config(args.adapter)  # fail fast, before loading gigabytes
    read_adapter_tensors(args.adapter)
    base_dir = resolve_model_dir(args.base)  # the folder from_pretrained reads (the Hub cache for an id)
    gguf = base_dir.is_file()  # a llama.cpp .gguf file: config and tokenizer are in its header
    tokenizer_files = [] if gguf else _tokenizer_files(base_dir, LlamaConfig.from_file(base_dir / "config.json").vocab_size)
    _check_base(args, base_dir)
    dtype = None if args.dtype == "auto" else args.dtype
    if args.quantize and dtype is None:
        dtype = "bfloat16"
    model = Llama.from_pretrained(args.base, dtype=dtype, quantize=args.quantize,
                                  double_quant=not args.no_double_quant)
    load_adapter(model, args.adapter)
    n_layers = len(lora_layers(model))
    merge_lora(model, unload=True, progress=True)
    if args.quantize:  # the layers LoRA did not adapt are still 4-bit: write them dequantised
        from minillama.nf4.convert import dequantize_model
        dequantize_model(model)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, max_shard_size=args.max_shard_size)
        if gguf:
            tokenizer_files.extend(_gguf_tokenizer(base_dir, tmp))
        for name in ([] if gguf else tokenizer_files):  # the base's generation_config.json replaces the written one
            shutil.copyfile(base_dir / name, tmp / name)
        if {"tokenizer.model", "tokenizer.json"} & set(tokenizer_files):
            load_tokenizer(tmp)  # the merged folder's tokenizer loads as the base's did

    try:  # built under a temporary name and renamed when complete (plumbing.durable)
        write_folder_atomic(out, write)
    except FileExistsError:
        raise LoraError(f"{out}: already exists and is not empty; refusing to overwrite it") from None
    except OSError as exc:  # a full disk, a read-only folder: one line naming --out, exit status 1
        raise OSError(exc.errno, f"cannot write the merged checkpoint ({exc.strerror or exc}); nothing was "
                      f"left behind", str(out)) from None
    base = f"{args.base} (loaded in NF4, written dequantised)" if args.quantize else args.base
    print(f"merged {n_layers} LoRA layers (r={config.r}, alpha={config.alpha:g}) from {args.adapter} into "
          f"{base}; wrote {out} ({str(model.dtype).removeprefix('torch.')})")
    if not {"tokenizer.model", "tokenizer.json"} & set(tokenizer_files):
        print(f"note: the base {args.base} has no tokenizer.model or tokenizer.json; {out} has no tokenizer (copy "
              "one in, or pass --tokenizer to python -m minillama generate)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (docs/cli.md): 0 ok, 1 failure while running (a full disk
    while saving, a failed Hub download), 2 bad input or usage, 130 on SIGINT, 143 on SIGTERM; `error: ...`
    on stderr."""
    args = build_parser().parse_args(argv)

    def body() -> None:
        if args.command == "merge":
            merge(args)
        elif args.command == "count":
            count(args)
        elif args.command == "memory":
            memory(args)

    return run_cli(body, handled=(LoraError, MiniLlamaError, OSError),
                   interrupted="interrupted; nothing was written to the output folder")
