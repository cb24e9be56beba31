"""`python -m minillama ...`: see `minillama.cli`."""
import sys

from plumbing.threads import prepare_openmp

prepare_openmp()  # before torch is imported, since OpenMP reads its wait policy once (plumbing/threads.py)

from .cli import main  # noqa: E402

sys.exit(main())
