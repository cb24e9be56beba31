"""Fault injection for the tests: `MEDLORA_FAULT_KILL_AT=<point>` makes the process SIGKILL itself there.

Points are named where the code calls `kill_point`, e.g. `checkpoint:4:optimizer` (inside the write of
checkpoint 4, after its optimizer files). Unset (always, outside the fault-injection tests) it does nothing.
"""
from __future__ import annotations

import os
import signal

ENV = "MEDLORA_FAULT_KILL_AT"


def kill_point(name: str) -> None:
    """SIGKILL this process if `MEDLORA_FAULT_KILL_AT` names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
