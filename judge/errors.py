"""Error classes of the judge: bad input versus a run that must stop at once."""
from __future__ import annotations

from plumbing.errors import CommandError


class JudgeError(CommandError):
    """One line the CLI prints as `error: <message>`, exiting with `exit_code`.

    `exit_code` is 2 (bad input or usage: a pairs file, a flag, a missing key, a journal another run
    holds) unless the error is a failure while running (a full disk), raised with `exit_code=1`.
    """


class FatalJudgeError(JudgeError):
    """The endpoint refused the run as a whole (401, 400, exhausted quota, unreachable host): exit 1.

    Retrying cannot help, so the runner cancels the requests in flight, keeps the journal as it is,
    and the CLI prints one line. Messages never contain the API key (see `judge.llm.config.redact`).
    """

    exit_code = 1
