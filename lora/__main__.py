"""`python -m lora ...`: see `lora.cli`."""
import sys

from lora.cli import main

sys.exit(main())
