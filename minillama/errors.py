"""The one error class minillama raises for bad input (a missing file, a config it cannot honour ...)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plumbing.errors import CommandError


class MiniLlamaError(CommandError):
    """A user-facing error whose message is one line naming the file and the problem.

    CLIs print it as ``error: <message>`` on stderr and exit with ``exit_code``, without a traceback:
    2 for bad input (the default), 1 for a failure while running (a Hub download that failed).
    Newlines in the message are folded (by `CommandError`) so the contract "one clear line" always holds.
    """


def check_path(value, what: str) -> None:
    """Raise MiniLlamaError unless `value` is a str or os.PathLike (the argument called `what`)."""
    import os

    if not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value):
        raise MiniLlamaError(f"{what} must be a path or Hub id (a non-empty str or os.PathLike), got {value!r}")


def read_json(path: Path, required: bool = True, what: str = "file") -> dict[str, Any] | None:
    """A JSON object from `path` (config.json, tokenizer.json ...; None for an optional file that is absent),
    one line naming the file on any problem."""
    if not path.is_file():
        if required:
            raise MiniLlamaError(f"{path}: {what} not found")
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MiniLlamaError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MiniLlamaError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MiniLlamaError(f"{path}: expected a JSON object")
    return value
