"""`python -m judge.human serve|export ...` (see judge/human/cli.py)."""
import sys

from judge.human.cli import main

sys.exit(main())
