"""`with installed():` around an entry point's imports: one line instead of a traceback where the project is not
installed (a fresh checkout), and a quiet exit on Ctrl-C while torch loads. Standard library only: it runs before
any package of the project can be imported."""
from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def installed():
    try:
        yield
    except ModuleNotFoundError as missing:  # run from a checkout that was never installed
        sys.exit(f"error: the module {missing.name!r} is not installed; install the project first "
                 "(pip install torch==2.13.0 && pip install -e .) and run again")
    except KeyboardInterrupt:  # Ctrl-C while torch loads
        print("interrupted (SIGINT); nothing was written", file=sys.stderr)
        sys.exit(130)
