"""`python -m judge.standin ...`: see `judge/standin/server.py`."""
import sys

from judge.standin.server import main

sys.exit(main())
