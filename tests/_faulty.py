"""Run a command with a fault injected: SIGKILL the process right after the N-th matching call of a function.

    python tests/_faulty.py MODULE:FUNC[:TEXT[:N]] ENTRY_MODULE [ARGS ...]

`MODULE.FUNC` is wrapped: after a call returns whose path-like arguments contain TEXT (any call when TEXT is
empty), the N-th such call (default 1) SIGKILLs this process, as a power cut or `kill -9` would. Then
`ENTRY_MODULE.main(ARGS)` runs. The project's library has no fault hook of its own: the tests put the fault
where they want it, for example

    python tests/_faulty.py lora.finetune.checkpoint:save_file:.step_00000004.tmp/optimizer medlora_scripts.train ...
    python tests/_faulty.py pipeline.generation:write_text_atomic:batch_ medlora_scripts.reproduce ...
"""
from __future__ import annotations

import importlib
import os
import signal
import sys


def inject(spec: str) -> None:
    module_name, func, *rest = spec.split(":")
    text = rest[0] if rest else ""
    nth = int(rest[1]) if len(rest) > 1 and rest[1] else 1
    module = importlib.import_module(module_name)
    real = getattr(module, func)
    matched = [0]

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        paths = " ".join(str(a) for a in (*args, *kwargs.values()) if isinstance(a, (str, os.PathLike, int)))
        if text in paths:
            matched[0] += 1
            if matched[0] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(module, func, wrapper)


if __name__ == "__main__":
    spec, entry, *argv = sys.argv[1:]
    command = importlib.import_module(entry)  # imported first: the wrapped function may live in what it imports
    inject(spec)
    sys.exit(command.main(argv))
