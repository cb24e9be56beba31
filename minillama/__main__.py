"""`python -m minillama ...`: see `minillama.cli`."""
import sys

from .cli import main

sys.exit(main())
