"""The journal: keys that change with what the judge is asked, durable appends, torn last lines."""
import json

from judge.llm.journal import Journal, judgment_key

MSG = [{"role": "user", "content": "question and answer"}]
SAMPLING = {"temperature": 0.0, "seed": 0, "max_tokens": 400}


def test_key_changes_with_every_input():
    base = judgment_key("gpt-4o", MSG, SAMPLING, 0, ["pointwise", "1", "a"])
    assert base == judgment_key("gpt-4o", [dict(MSG[0])], dict(SAMPLING), 0, ["pointwise", "1", "a"])
    variants = [
        judgment_key("gpt-4", MSG, SAMPLING, 0, ["pointwise", "1", "a"]),
        judgment_key("gpt-4o", [{"role": "user", "content": "question and answer!"}], SAMPLING, 0,
                     ["pointwise", "1", "a"]),
        judgment_key("gpt-4o", MSG, {**SAMPLING, "seed": 1}, 0, ["pointwise", "1", "a"]),
        judgment_key("gpt-4o", MSG, {**SAMPLING, "temperature": 0.7}, 0, ["pointwise", "1", "a"]),
        judgment_key("gpt-4o", MSG, SAMPLING, 1, ["pointwise", "1", "a"]),
        judgment_key("gpt-4o", MSG, SAMPLING, 0, ["pointwise", "1", "b"]),
    ]
    assert len({base, *variants}) == 7 and all(len(k) == 64 for k in variants)


def test_append_reload_and_error_records_are_redone(tmp_path):
    path = tmp_path / "j" / "journal.jsonl"
    with Journal(path) as journal:
        journal.append({"key": "a", "status": "ok"})
        journal.append({"key": "b", "status": "error"})
        journal.append({"key": "c", "status": "parse_failure"})
    again = Journal(path)
    assert "a" in again and "c" in again and "b" not in again  # transport errors are retried on resume
    assert again.torn == 0 and len(path.read_text().splitlines()) == 3


def test_torn_last_line_is_skipped_and_kept(tmp_path):
    path = tmp_path / "journal.jsonl"
    whole = json.dumps({"key": "a", "status": "ok"}) + "\n"
    torn = '{"key": "b", "stat'
    path.write_text(whole + torn)
    journal = Journal(path)
    assert journal.torn == 1 and "a" in journal and "b" not in journal
    with journal:
        journal.append({"key": "b", "status": "ok"})
    text = path.read_text()
    assert text.startswith(whole + torn + "\n")  # nothing rewritten; the torn bytes stay on their own line
    reread = Journal(path)
    assert "a" in reread and "b" in reread and reread.torn == 1
