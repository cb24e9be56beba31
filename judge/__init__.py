"""judge: the two judges of the evaluation, on the paper's four dimensions (rubric.py, table.py).

    judge.llm       Track B: an LLM-as-judge client for OpenAI-compatible endpoints: blind (the judge never
                    sees which system wrote a response), seeded, resumable (a JSONL journal), rate-limit-proof
                    (retries that honour `retry-after`); unreadable answers are parse failures, never scores.
    judge.human     Track C: blinded rating by clinicians in the browser, and its agreement statistics.
    judge.standin   an offline OpenAI-compatible stand-in server (a word-overlap heuristic, NOT a judge).

    python -m judge run --pairs base.jsonl --pairs tuned.jsonl --out judge_out --model gpt-4o
    python -m judge.human serve --pairs base.jsonl --pairs tuned.jsonl --store ratings.sqlite --raters a,b
    python -m judge.standin --port 8089

Public API (imported lazily, PEP 562, so that `python -m judge.human` loads only what it needs)::

    from judge import JudgeConfig, JudgeClient, Journal, build_jobs, run_jobs, table2, judge_files
"""
from importlib import import_module

_EXPORTS = {
    "ChatResult": "judge.llm.client", "JudgeClient": "judge.llm.client", "RequestFailed": "judge.llm.client",
    "JudgeConfig": "judge.llm.config", "Secret": "judge.llm.config",
    "FatalJudgeError": "judge.errors", "JudgeError": "judge.errors",
    "Journal": "judge.llm.journal", "judgment_key": "judge.llm.journal",
    "paired_records": "judge.pairs",
    "parse_scores": "judge.llm.parse", "parse_verdict": "judge.llm.parse",
    "DEFINITIONS": "judge.rubric", "DIMENSIONS": "judge.rubric",
    "Job": "judge.llm.runner", "build_jobs": "judge.llm.runner", "judge_one": "judge.llm.runner",
    "run_jobs": "judge.llm.runner",
    "JudgeOptions": "judge.llm.commands", "judge_files": "judge.llm.commands",
    "render_markdown": "judge.table", "table2": "judge.table",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # cache: later look-ups skip this function
        return value
    raise AttributeError(f"module 'judge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
