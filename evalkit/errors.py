"""The one error class evalkit raises for bad input (files, fields, options) and failed writes."""
from __future__ import annotations

from plumbing.errors import CommandError


class EvalkitError(CommandError):
    """One line: ``"<file>:<line>: <problem>"`` (or ``"<file>: <problem>"``, ``"--flag: <problem>"``).

    The CLI prints it as ``error: <message>`` on stderr, without a traceback, and exits with its
    ``exit_code``: 2 (bad input, the default) or 1 (a failure while running, e.g. a full disk).
    """

    @classmethod
    def at(cls, path: object, line: int | None, problem: str, exit_code: int | None = None) -> "EvalkitError":
        """Build the error for ``problem`` found in file ``path`` (at 1-based ``line`` when known)."""
        where = f"{path}:{line}" if line is not None else f"{path}"
        return cls(f"{where}: {problem}", exit_code)
