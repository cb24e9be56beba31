"""judge: Track B of the evaluation, an LLM-as-judge client for OpenAI-compatible endpoints.

Blind (the judge never sees which system wrote a response), seeded, resumable (a JSONL journal),
rate-limit-proof (retries that honour `retry-after`), and it never invents a score: unreadable
answers are counted as parse failures. See docs/judge.md.

    python -m judge run --pairs base.jsonl --pairs tuned.jsonl --out judge_out --model gpt-4o
    python -m judge.standin --port 8089      # offline stand-in server (a heuristic, NOT a judge)

Public API::

    from judge import JudgeConfig, JudgeClient, Journal, build_jobs, run_jobs, table2
    from judge.standin import start_standin   # not imported here, so `python -m judge.standin` runs clean
"""
from judge.client import ChatResult, JudgeClient, RequestFailed
from judge.config import JudgeConfig, Secret
from judge.errors import FatalJudgeError, JudgeError
from judge.journal import Journal, judgment_key
from judge.pairs import Item, read_pairs
from judge.parse import parse_scores, parse_verdict
from judge.rubric import DEFINITIONS, DIMENSIONS
from judge.runner import Job, build_jobs, judge_one, run_jobs
from judge.table import render_markdown, table2

__all__ = ["ChatResult", "JudgeClient", "RequestFailed", "JudgeConfig", "Secret", "FatalJudgeError", "JudgeError",
           "Journal", "judgment_key", "Item", "read_pairs", "parse_scores", "parse_verdict", "DEFINITIONS",
           "DIMENSIONS", "Job", "build_jobs", "judge_one", "run_jobs", "render_markdown", "table2"]
