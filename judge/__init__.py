"""Track B: an LLM-as-judge client (see docs/judge.md)."""
