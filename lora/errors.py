"""The one error class of the `lora` package."""
from __future__ import annotations

from plumbing.errors import CommandError


class LoraError(CommandError, ValueError):
    """Bad LoRA input: an invalid config, a target that matches nothing, an adapter that does not fit.

    The message is one line and, when a file is involved, starts with that file's path, so a CLI can
    print it as `error: <message>` without a traceback; the exit status is `exit_code`, 2 (bad input).
    """
