"""`run_cli`: a command's body under the project's exit-code convention (docs/cli.md).

    def main(argv=None) -> int:
        args = build_parser().parse_args(argv)
        return run_cli(lambda: run(args), handled=(EvalkitError, OSError),
                       interrupted="interrupted; nothing was written")

Bad input and failures print one line `error: <flag or file>: <problem>`; SIGINT / SIGTERM print the
`interrupted` line; a bug keeps its traceback (it is not a handled error). `ArgumentParser` turns a usage
error into such a line where the flags come from a config file, not a person at a terminal.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, TextIO

from plumbing.errors import EXIT_FAILURE, EXIT_OK, error_line, exit_code, is_disk_full
from plumbing.signals import Interrupted, sigterm_raises, unblock_sigterm


def run_cli(body: Callable[[], int | None], handled: tuple[type[BaseException], ...] = (),
            interrupted: str | Callable[[str], str] = "interrupted", err: TextIO | None = None,
            disk_full: str = "") -> int:
    """Run a command's `body`; returns its exit status.

    Args:
        body: the command; returns its exit status (None means 0).
        handled: exception classes that are reported as `error: <one line>` (their `exit_code`
            attribute, else 1 for OSError); anything else propagates with its traceback (a bug).
        interrupted: the line printed on SIGINT / SIGTERM, or a function of the signal's name ("SIGINT",
            "SIGTERM") returning it, called then, e.g. "interrupted; rerun the same command to resume".
        err: where the lines go (default: sys.stderr at call time).
        disk_full: appended to the error line of a full disk, e.g. "; free space and rerun with --resume".
    """
    err = err or sys.stderr
    with sigterm_raises():
        try:
            unblock_sigterm()
            code = body()
            return EXIT_OK if code is None else code
        except (KeyboardInterrupt, Interrupted) as exc:
            name = str(exc) if isinstance(exc, Interrupted) else "SIGINT"
            line = interrupted(name) if callable(interrupted) else interrupted
            print(line, file=err, flush=True)
            return exit_code(exc)  # type: ignore[return-value]
        except handled as exc:
            print(f"error: {error_line(exc)}{disk_full if is_disk_full(exc) else ''}", file=err, flush=True)
            code = exit_code(exc)
            return EXIT_FAILURE if code is None else code


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (docs/cli.md): `raises(message)` when `raises` is given (printed
    as one `error:` line by `run_cli`, with that exception's exit code), else `error: <flag>: <problem>; see
    <prog> --help` on stderr and exit status 2 (argparse's code for usage errors), never the usage block.
    Subcommands (`add_subparsers().add_parser`) are parsers of the same class (argparse's default).

        parser = ArgumentParser(prog="judge.args", raises=JudgeError)   # flags from a pipeline config
    """

    def __init__(self, *args, raises: type[Exception] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.raises = raises

    def error(self, message: str):
        if self.raises is not None:
            raise self.raises(message)
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def add_pairs_and_out(parser: argparse.ArgumentParser, out_help: str) -> None:
    """`--pairs FILE` (repeated, one per system) and `--out DIR`: the inputs and output of `evalkit score|ground` and
    `judge run`."""
    parser.add_argument("--pairs", action="append", required=True, metavar="FILE",
                        help="JSONL of {id, model, prompt, reference, response}; once per system, baseline first")
    parser.add_argument("--out", required=True, metavar="DIR", help=out_help)
