"""`python -m judge run ...` (see judge/cli.py)."""
import sys

from judge.cli import main

sys.exit(main())
