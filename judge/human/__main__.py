"""`python -m judge.human serve|export ...` (see judge/human/cli.py).

Signals are handled from the first line: a Ctrl-C while the command's modules are still being imported
ends in one line and exit status 130 (SIGTERM 143), as it does later (`plumbing.command.run_cli`).
"""
import sys

STOPPED = "interrupted; nothing was started"

try:
    from plumbing.command import run_cli
except KeyboardInterrupt:  # Ctrl-C in the first milliseconds, before run_cli is there to catch it
    print(STOPPED, file=sys.stderr)
    sys.exit(130)


def _main() -> int:
    from judge.human.cli import main

    return main()


sys.exit(run_cli(_main, interrupted=STOPPED))
