"""judge.human: Track C, blinded rating of the answers by clinicians in the browser, and its agreement
with Track A (metrics), Track B (the LLM judge) and grounding scores. See docs/track-c.md.

    python -m judge.human serve --pairs base.jsonl --pairs tuned.jsonl --store ratings.sqlite --raters alice,bob,carol
    python -m judge.human export --store ratings.sqlite --out track_c [--judgments judgments.jsonl] [--scores scores.jsonl]

Modules: `store` (SQLite), `assign` (queues, seeds, sides), `study` (create or reopen a study, links,
the store's lock), `auth` (tokens, CSRF, headers), `payload` (validation), `app` (the API's answers),
`server` (HTTP), `framing` (request targets and body lengths), `connections` (the connection cap and
request deadlines), `static/` (the page), `sources` (judge, Track A and grounding files), `agreement` and `tables`
(statistics and Table C), `export` (files and `summarise` for reports), `cli`.
"""
