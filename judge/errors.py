"""Error classes of the judge: bad input versus a run that must stop at once."""
from __future__ import annotations


class JudgeError(Exception):
    """Bad input or configuration: the CLI prints `error: <message>` and exits non-zero."""


class FatalJudgeError(JudgeError):
    """The endpoint refused the run as a whole (401, 400, exhausted quota, unreachable host).

    Retrying cannot help, so the runner cancels the requests in flight, keeps the journal as it is,
    and the CLI prints one line. Messages never contain the API key (see `judge.config.redact`).
    """
