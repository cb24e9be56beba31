"""Command line: `python -m minillama generate --model PATH_OR_ID_OR_RUN [--adapter DIR] --prompt TEXT ...`.

    python -m minillama generate --model runs/demo --prompt "I have a rash"      # a run: base + adapter + template
    python -m minillama generate --model BASE --adapter runs/demo/adapter --interactive
    python -m minillama generate --model meta-llama/Llama-2-7b-chat-hf --chat --prompt "Hello"

Bad input (a missing folder, another architecture, a truncated or mis-shaped checkpoint, a pickle-only
checkpoint, an invalid config.json or GGUF file, an out-of-range flag ...) prints one line `error: <file or flag>:
<problem>` on stderr and exits with status 2; a failed Hub download exits with 1 (docs/cli.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from typing import Callable, Sequence, TextIO

import torch

from plumbing.command import ArgumentParser, run_cli
from plumbing.errors import CommandError
from plumbing.threads import configure_threads

from .chat import Session, conversation_ids, resolve_session
from .chat_template import require_template
from .config import LlamaConfig
from .errors import MiniLlamaError
from .gguf import llama_config, read_gguf
from .load import resolve_model_dir
from .model import Llama
from .templates import TEMPLATES
from .tokenizer import Tokenizer, load_tokenizer


class TextStreamer:
    """Turns the token ids of one row into text as they arrive and writes only what is new.

    The whole continuation is decoded again each step (SentencePiece joins pieces and spaces in context),
    and nothing is written while the text ends in an incomplete UTF-8 sequence (byte-fallback pieces).
    """

    def __init__(self, tokenizer: Tokenizer, out: TextIO, stop_ids: tuple[int, ...] = ()):
        self.tokenizer, self.out, self.stop_ids = tokenizer, out, set(stop_ids)
        self.ids: list[int] = []
        self.printed = 0
        self.stopped = False

    def __call__(self, token: torch.Tensor) -> None:
        t = int(token[0])
        if self.stopped or t in self.stop_ids:
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
    parser = ArgumentParser(prog="python -m minillama", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate a continuation (or a chat answer), streaming it")
    g.add_argument("--model", required=True,
                   help="model folder, .gguf file (llama.cpp), Hugging Face Hub id, or a training run folder "
                        "(scripts/train.py --out)")
    g.add_argument("--adapter", default=None,
                   help="LoRA adapter folder (PEFT format) or training run folder to apply to the model")
    g.add_argument("--template", default=None, choices=TEMPLATES,
                   help="prompt template (default: the run's; alpaca with an adapter; without one the model's "
                        "own chat template (model) if it has one, else none)")
    g.add_argument("--quantize", default=None, choices=["none", "nf4"],
                   help="load the base in 4-bit NF4 (default: as the run trained, else as stored)")
    g.add_argument("--prompt", default=None, help="the prompt (the user message / the patient's question)")
    g.add_argument("--interactive", action="store_true", help="hold a conversation: read messages from stdin")
    g.add_argument("--chat", action="store_true", help="the Llama-2 chat format (= --template llama2-chat)")
    g.add_argument("--system", default=None,
                   help="system message / instruction (default: the instruction the run was trained with)")
    g.add_argument("--max-new-tokens", type=int, default=256)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "float64", "bfloat16", "float16"],
                   help="weights dtype (auto = as stored)")
    g.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    g.add_argument("--tokenizer", default=None,
                   help="tokenizer.model or tokenizer.json (default: the one in the model folder)")
    g.add_argument("--strict", action="store_true",
                   help="refuse (exit 2) an adapter trained on another base than the model (default: a warning)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Refuse out-of-range flags before anything is loaded (one line naming the flag)."""
    checks = [
        ("--max-new-tokens", args.max_new_tokens >= 1, "an integer >= 1"),
        ("--temperature", math.isfinite(args.temperature) and args.temperature >= 0, "a finite number >= 0"),
        ("--top-p", 0.0 < args.top_p <= 1.0, "a number in (0, 1]"),
        ("--top-k", args.top_k >= 0, "an integer >= 0 (0 = off)"),
        ("--seed", args.seed is None or 0 <= args.seed < 2**64, "an integer in [0, 2**64)"),
    ]
    for flag, ok, wanted in checks:
        if not ok:
            raise MiniLlamaError(f"{flag}: must be {wanted}, got {getattr(args, flag[2:].replace('-', '_'))}")


def load(session: Session, dtype: str, device: str, tokenizer_path: str | None) -> tuple[Llama, Tokenizer]:
    """The base model with the session's adapter applied, and its tokenizer."""
    model_dir = resolve_model_dir(session.base)
    if model_dir.is_file():  # a .gguf file: its metadata holds the config and the tokenizer
        llama_config(read_gguf(model_dir))  # a bad header fails before the tokenizer is read
        tokenizer = load_tokenizer(tokenizer_path or model_dir)
    else:
        LlamaConfig.from_file(model_dir / "config.json")  # a bad config.json fails before the tokenizer is read
        tokenizer = load_tokenizer(tokenizer_path or model_dir)
    model = Llama.from_pretrained(model_dir, dtype=dtype, device=device, quantize=session.quantize)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise MiniLlamaError(f"{tokenizer.path}: tokenizer has {tokenizer.vocab_size} tokens, the model "
                             f"only {model.config.vocab_size}")
    if session.apply_adapter is not None:  # given by the resolver that found the adapter (minillama/chat.py)
        session.apply_adapter(model)
        model.eval()
    return model, tokenizer


def answer(model: Llama, tokenizer: Tokenizer, ids: list[int], args: argparse.Namespace, out: TextIO,
           err: TextIO, said: set | None = None, prefix: str = "") -> str:
    """Generate and stream one answer; returns its text. The new tokens are capped at what the model's
    context leaves after the prompt (said once per conversation: `said` holds the notes already printed).

    `prefix` ("model> ") is written to `out` after the notes, so that a note is not printed inside the answer's
    line."""
    limit = model.config.max_position_embeddings
    room = limit - len(ids)
    if room < 1:
        raise MiniLlamaError(f"--prompt: {len(ids)} tokens leave no room under the model's "
                             f"max_position_embeddings {limit}")
    said = set() if said is None else said
    if room < args.max_new_tokens and "cap" not in said:
        said.add("cap")
        err.write(f"note: the model's context is {limit} positions; after the {len(ids)}-token prompt at most "
                  f"{room} new tokens fit (--max-new-tokens {args.max_new_tokens})\n")
    out.write(prefix)
    out.flush()
    streamer = TextStreamer(tokenizer, out, tokenizer.eos_ids)  # Llama-3 ends a turn with <|eot_id|>
    start = time.perf_counter()
    result = model.generate(torch.tensor([ids], device=model.device), max_new_tokens=min(args.max_new_tokens, room),
                            temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                            eos_id=list(tokenizer.eos_ids), seed=args.seed, pad_id=tokenizer.pad_id,
                            on_token=streamer)
    seconds = time.perf_counter() - start
    streamer.finish()
    out.write("\n")
    out.flush()
    n = result.shape[1] - len(ids)
    reason = "stop" if streamer.stopped else "length"
    why = " (the model's context is full)" if reason == "length" and len(ids) + n >= limit else ""
    err.write(f"[minillama] {n} tokens in {seconds:.2f}s ({n / max(seconds, 1e-9):.1f} tokens/s), "
              f"finish_reason={reason}{why}\n")
    return tokenizer.decode(streamer.ids).strip()


def fit_turns(session: Session, tokenizer: Tokenizer, history: list[tuple[str, str]], message: str,
              system: str | None, max_new_tokens: int, limit: int) -> tuple[list[int], int]:
    """The prompt for `message` after as many of the latest turns as leave room for an answer.

    The oldest turns go first, only while the prompt would leave fewer than `reserve` positions for the
    answer: `max_new_tokens`, but at most a quarter of the context (so a large --max-new-tokens does not
    empty the history on every turn). Returns (prompt ids, turns dropped); `history` is shortened in place.
    """
    reserve = max(1, min(max_new_tokens, limit // 4))
    ids = conversation_ids(session, tokenizer, history, message, system)
    dropped = 0
    while history and len(ids) + reserve > limit:
        history.pop(0)  # forget the oldest turn rather than run past the context
        dropped += 1
        ids = conversation_ids(session, tokenizer, history, message, system)
    return ids, dropped


def own_template(session: Session, tokenizer: Tokenizer, args: argparse.Namespace) -> Session:
    """The session with the model's own chat template where nothing chose a template (a base model without
    --template, --chat or a run), its note saying so; `--template model` on a model without one is refused."""
    if session.template == "model":
        require_template(tokenizer)
    defaulted = args.template is None and not args.chat and session.adapter is None and session.template == "none"
    if defaulted and getattr(tokenizer, "chat_template", None) is not None:
        note = session.note.replace("template none (default)", "template model (default: the model's own "
                                    f"chat_template, from {tokenizer.chat_template.source}; --template none for "
                                    "raw text)")
        return dataclasses.replace(session, template="model", note=note)
    return session


def run_generate(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO | None = None) -> int:
    check_args(args)
    if args.prompt is None and not args.interactive:
        raise MiniLlamaError("--prompt: give the text to answer, or --interactive to hold a conversation")
    if args.prompt is not None and not args.prompt.strip():
        raise MiniLlamaError("--prompt: is empty; give the text to answer")
    session = resolve_session(args.model, args.adapter, args.template, args.chat, args.quantize)
    problem = session.check_base(resolve_model_dir(session.base)) if session.check_base is not None else None
    if problem and args.strict:
        raise MiniLlamaError(f"{session.adapter}: {problem} (refused by --strict)")
    if problem:
        err.write(f"warning: {session.adapter}: {problem} (--strict refuses it)\n")
    configure_threads(0)
    model, tokenizer = load(session, args.dtype, args.device, args.tokenizer)
    session = own_template(session, tokenizer, args)
    conversation_ids(session, tokenizer, [], "?", args.system)  # a template that does not fit fails before any output
    err.write(f"[minillama] {session.note}\n")
    history: list[tuple[str, str]] = []
    said: set = set()
    if args.prompt is not None:
        text = answer(model, tokenizer, conversation_ids(session, tokenizer, [], args.prompt, args.system), args,
                      out, err, said)
        history.append((args.prompt, text))
    if not args.interactive:
        return 0
    read = prompt_reader(stdin or sys.stdin, out, err)
    err.write("[minillama] conversation: type a message and press Enter; an empty line, 'exit' or Ctrl-D ends it; "
              "Ctrl-C stops an answer\n")
    while True:
        line = read()
        if line is None or line.strip() in ("", "exit", "quit"):
            return 0
        try:  # Ctrl-C from here to the end of the answer stops this answer only
            text = turn(session, model, tokenizer, history, line.strip(), args, out, err, said)
        except KeyboardInterrupt:
            out.write("\n")
            out.flush()
            err.write("[minillama] answer stopped (Ctrl-C); it is left out of the conversation. Ctrl-C again at "
                      "you> or Ctrl-D ends the conversation\n")
            continue
        if text is not None:
            history.append((line.strip(), text))


def turn(session: Session, model: Llama, tokenizer: Tokenizer, history: list[tuple[str, str]], message: str,
         args: argparse.Namespace, out: TextIO, err: TextIO, said: set) -> str | None:
    """One turn of the conversation: the prompt with as many earlier turns as fit, then the streamed answer;
    None (after one error line) when the message alone fills the context."""
    limit = model.config.max_position_embeddings
    ids, dropped = fit_turns(session, tokenizer, history, message, args.system, args.max_new_tokens, limit)
    if len(ids) >= limit:  # this message alone fills the context: refuse the turn, keep the conversation
        err.write(f"error: this message takes {len(ids)} tokens with its prompt format; the model's context "
                  f"holds {limit} (max_position_embeddings): send a shorter one\n")
        return None
    if dropped and "dropped" not in said:
        said.add("dropped")
        err.write(f"note: the oldest turns are left out from now on ({dropped} this time): the conversation no "
                  f"longer fits the model's context of {limit} positions with room for an answer\n")
    return answer(model, tokenizer, ids, args, out, err, said, prefix="model> ")


def prompt_reader(stdin: TextIO, out: TextIO, err: TextIO) -> Callable[[], str | None]:
    """A function that shows `you> ` and returns the next message, or None at the end of the input.

    On a terminal (stdin and stdout the process's own, both ttys) it reads with `input()`, with GNU readline
    where the platform has it (line editing, history; Ctrl-D on a half-typed line deletes, it does not
    send); Ctrl-C at the prompt ends the conversation (exit 130). Otherwise `you> ` goes to stderr and lines
    are read from `stdin`. Ctrl-D prints a newline, so the shell's prompt starts on a line of its own; a line
    cut short by the end of the input (no newline: Ctrl-D after typing, without readline) is not sent.
    """
    tty = stdin is sys.stdin and out is sys.stdout and stdin.isatty() and out.isatty()
    if tty:
        try:
            import readline  # noqa: F401  (line editing for input(); absent on some platforms)
        except ImportError:
            pass

    def read() -> str | None:
        if tty:
            err.flush()
            try:
                return input("you> ") + "\n"  # the prompt is drawn on the terminal by readline
            except EOFError:
                err.write("\n")
                return None
            except KeyboardInterrupt:
                err.write("\n")
                raise
        err.write("you> ")
        err.flush()
        line = stdin.readline()
        if not line.endswith("\n"):  # the end of the input, or a half-typed line ended by Ctrl-D: not sent
            err.write("\n")
            return None
        return line

    return read


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point; returns the exit status (docs/cli.md): 0 ok, 1 failure while running (a Hub download,
    a read error), 2 bad input or usage, 130 on SIGINT, 143 on SIGTERM."""
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run_generate(args, out, err), handled=(CommandError, OSError),
                   interrupted="interrupted", err=err)
