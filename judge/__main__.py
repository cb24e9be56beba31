"""`python -m judge run ...` (see judge/llm/cli.py)."""
import sys

from judge.llm.cli import main

sys.exit(main())
