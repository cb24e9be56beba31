"""Command line: `python -m minillama generate --model PATH_OR_ID --prompt TEXT [--chat] ...`.

Bad input (a missing folder, another architecture, a truncated or mis-shaped checkpoint, a pickle-only
checkpoint, an invalid config.json, an out-of-range flag ...) prints one line `error: <file or flag>:
<problem>` on stderr and exits with status 2; a failed Hub download exits with 1 (docs/cli.md).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Sequence, TextIO

import torch

from .checkpoint import resolve_model_dir
from .config import LlamaConfig
from .errors import MiniLlamaError
from .jobcontrol import run_cli
from .model import Llama
from .tokenizer import Tokenizer, load_tokenizer


class TextStreamer:
    """Turns the token ids of one row into text as they arrive and writes only what is new.

    The whole continuation is decoded again each step (SentencePiece joins pieces and spaces in context),
    and nothing is written while the text ends in an incomplete UTF-8 sequence (byte-fallback pieces).
    """

    def __init__(self, tokenizer: Tokenizer, out: TextIO, stop_id: int | None):
        self.tokenizer, self.out, self.stop_id = tokenizer, out, stop_id
        self.ids: list[int] = []
        self.printed = 0
        self.stopped = False

    def __call__(self, token: torch.Tensor) -> None:
        t = int(token[0])
        if self.stopped or t == self.stop_id:
            self.stopped = True
            return
        self.ids.append(t)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):
            return
        self._write(text)

    def finish(self) -> None:
        """Write whatever is still held back (text that ended inside a UTF-8 sequence)."""
        self._write(self.tokenizer.decode(self.ids))

    def _write(self, text: str) -> None:
        self.out.write(text[self.printed:])
        self.out.flush()
        self.printed = len(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m minillama", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate a continuation (or a chat answer), streaming it")
    g.add_argument("--model", required=True, help="model folder or Hugging Face Hub id")
    g.add_argument("--prompt", required=True, help="the prompt (the user message with --chat)")
    g.add_argument("--chat", action="store_true", help="wrap the prompt in the Llama-2 chat format")
    g.add_argument("--system", default=None, help="system message for --chat")
    g.add_argument("--max-new-tokens", type=int, default=256)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights dtype (auto = as stored)")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--tokenizer", default=None, help="tokenizer.model (default: the one in the model folder)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Refuse out-of-range flags before anything is loaded (one line naming the flag)."""
    checks = [
        ("--max-new-tokens", args.max_new_tokens >= 1, "an integer >= 1"),
        ("--temperature", math.isfinite(args.temperature) and args.temperature >= 0, "a finite number >= 0"),
        ("--top-p", 0.0 < args.top_p <= 1.0, "a number in (0, 1]"),
        ("--top-k", args.top_k >= 0, "an integer >= 0 (0 = off)"),
        ("--seed", args.seed is None or args.seed >= 0, "an integer >= 0"),
    ]
    for flag, ok, wanted in checks:
        if not ok:
            raise MiniLlamaError(f"{flag}: must be {wanted}, got {getattr(args, flag[2:].replace('-', '_'))}")


def run_generate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    check_args(args)
    model_dir = resolve_model_dir(args.model)
    LlamaConfig.from_file(model_dir / "config.json")  # a bad config.json fails before the tokenizer is read
    tokenizer = load_tokenizer(args.tokenizer or model_dir)
    model = Llama.from_pretrained(model_dir, dtype=args.dtype, device=args.device)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise MiniLlamaError(f"{tokenizer.path}: tokenizer has {tokenizer.vocab_size} tokens, the model "
                             f"only {model.config.vocab_size}")
    if args.chat:
        messages = ([{"role": "system", "content": args.system}] if args.system else [])
        ids = tokenizer.encode_chat(messages + [{"role": "user", "content": args.prompt}])
    else:
        ids = tokenizer.encode(args.prompt, bos=True)
    limit = model.config.max_position_embeddings
    if len(ids) >= limit:
        raise MiniLlamaError(f"--prompt: {len(ids)} tokens fill the model's context of {limit} positions "
                             f"(max_position_embeddings in {model_dir / 'config.json'}); shorten it")
    max_new_tokens = min(args.max_new_tokens, limit - len(ids))
    if max_new_tokens < args.max_new_tokens:
        err.write(f"note: the model's context is {limit} positions; after the {len(ids)}-token prompt at most "
                  f"{max_new_tokens} new tokens fit (--max-new-tokens {args.max_new_tokens})\n")
    streamer = TextStreamer(tokenizer, out, tokenizer.eos_id)
    start = time.perf_counter()
    result = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens,
                            temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                            eos_id=tokenizer.eos_id, seed=args.seed, pad_id=tokenizer.pad_id, on_token=streamer)
    seconds = time.perf_counter() - start
    streamer.finish()
    out.write("\n")
    out.flush()
    n = result.shape[1] - len(ids)
    reason = "stop" if streamer.stopped else "length"
    why = " (the model's context is full)" if reason == "length" and len(ids) + n >= limit else ""
    err.write(f"[minillama] {n} tokens in {seconds:.2f}s ({n / max(seconds, 1e-9):.1f} tokens/s), "
              f"finish_reason={reason}{why}\n")
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point; returns the exit status (docs/cli.md): 0 ok, 1 failure while running (a Hub download,
    a read error), 2 bad input or usage, 130 on SIGINT, 143 on SIGTERM."""
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run_generate(args, out, err), handled=(MiniLlamaError, OSError),
                   interrupted="interrupted", err=err)
