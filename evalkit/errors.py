"""The one error class evalkit raises for bad input (files, fields, options)."""
from __future__ import annotations


class EvalkitError(Exception):
    """Bad input, reported as one line: ``"<file>:<line>: <problem>"`` (or ``"<file>: <problem>"``).

    The CLI prints it as ``error: <message>`` on stderr and exits with status 2, without a traceback.
    """

    @classmethod
    def at(cls, path: object, line: int | None, problem: str) -> "EvalkitError":
        """Build the error for ``problem`` found in file ``path`` (at 1-based ``line`` when known)."""
        where = f"{path}:{line}" if line is not None else f"{path}"
        return cls(f"{where}: {problem}")
