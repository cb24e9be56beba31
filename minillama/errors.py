"""The one error class minillama raises for bad input (a missing file, a config it cannot honour ...)."""
from __future__ import annotations


class MiniLlamaError(Exception):
    """A user-facing error whose message is one line naming the file and the problem.

    CLIs print it as ``error: <message>`` on stderr and exit with ``exit_code``, without a traceback:
    2 for bad input (the default), 1 for a failure while running (a Hub download that failed).
    Newlines in the message are folded so the contract "one clear line" always holds.
    """

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(" ".join(str(message).split("\n")))
        if exit_code is not None:
            self.exit_code = exit_code


def hub_error(message: str, exc: BaseException) -> MiniLlamaError:
    """`message` plus the Hub's first line; exit code 2 when the repo, revision or file does not exist or
    is gated (the id is wrong or access is missing), 1 otherwise (offline, a timeout, a server error)."""
    try:
        from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                            RevisionNotFoundError)
    except ImportError:  # older huggingface_hub
        from huggingface_hub.utils import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                           RevisionNotFoundError)
    missing = isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError)) or (
        isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError))
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return MiniLlamaError(f"{message} ({type(exc).__name__}: {first})", exit_code=2 if missing else 1)


def check_path(value, what: str) -> None:
    """Raise MiniLlamaError unless `value` is a str or os.PathLike (the argument called `what`)."""
    import os

    if not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value):
        raise MiniLlamaError(f"{what} must be a path or Hub id (a non-empty str or os.PathLike), got {value!r}")
