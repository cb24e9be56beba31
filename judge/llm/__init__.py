"""judge.llm: Track B, the LLM judge (docs/judge.md); the answers it judges are `judge.pairs`'.

    config.py    endpoint, model, sampling and limits; the key that never prints
    runner.py    blind, seeded jobs sent concurrently, one journal record each (the repair request)
    client.py    httpx chat completions with structured output; retry.py the retry rule; ratelimit.py rpm
    parse.py     reading a reply (JSON, marks, prose): never an invented score
    journal.py   the append-only, locked, crash-tolerant journal that makes a run resumable
    pricing.py   token counts and cost
    commands.py  `judge_files`: judge pairs files and write judgments and Table 2 (what `cli.py` and the pipeline call)
"""
