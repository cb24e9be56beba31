"""judge.standin: an OpenAI-compatible stand-in judge on loopback, to run Track B offline. NOT A JUDGE.

    url, stop = start_standin(port=0)      # then `python -m judge run --base-url URL ...`; stop() ends it
    python -m judge.standin --port 8089    # the same as a command

`answers.py` is the heuristic it answers with (word overlap, labelled as such in every reply); `server.py` the
HTTP server, which can be scripted to misbehave as real endpoints do (429, 5xx, truncated replies ...).
"""
from judge.standin.answers import LABEL, SERVED_MODEL, heuristic_scores
from judge.standin.server import parse_fail_plan, start_standin

__all__ = ["LABEL", "SERVED_MODEL", "heuristic_scores", "parse_fail_plan", "start_standin"]
