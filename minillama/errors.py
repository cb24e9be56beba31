"""The one error class minillama raises for bad input (a missing file, a config it cannot honour ...)."""
from __future__ import annotations


class MiniLlamaError(Exception):
    """A user-facing error whose message is one line naming the file and the problem.

    CLIs print it as ``error: <message>`` on stderr and exit non-zero, without a traceback.
    Newlines in the message are folded so the contract "one clear line" always holds.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split("\n")))
