"""lora.finetune.data / records and minillama.templates: validation with file + index, templates, truncation + EOS room rule, loss masks, split."""
from __future__ import annotations

import json

import pytest

from lora.finetune import data, demo_data
from lora.finetune import records as rec_io
from plumbing.files import sha256_file
from minillama import templates

IGNORE = data.IGNORE_INDEX


class CharTokenizer:
    """One id per character (id = 3 + code point mod 97), Llama's specials: unk 0, bos 1, eos 2."""

    bos_id, eos_id, pad_id = 1, 2, 0

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        return ([1] if bos else []) + [3 + ord(c) % 97 for c in text] + ([2] if eos else [])

    def encode_chat(self, messages: list[dict]) -> list[int]:
        return self.encode("|".join(f"{m['role']}:{m['content']}" for m in messages))

    llama2_chat_ids = encode_chat  # the hand-written Llama-2 format (templates.chat_ids calls it by name)


def rec(instruction="I", inp="ab", output="xyz"):
    return {"instruction": instruction, "input": inp, "output": output}


def test_alpaca_prompt_is_chatdoctor_wording():
    text = templates.ALPACA_PROMPT.format(instruction="Do X.", input="Y")
    assert text == ("Below is an instruction that describes a task, paired with an input that provides further "
                    "context. Write a response that appropriately completes the request.\n\n### Instruction:\nDo X."
                    "\n\n### Input:\nY\n\n### Response:\n")


def _lengths(r, tok, template="alpaca"):
    return len(templates.prompt_ids(r, tok, template)), len(tok.encode(r["output"], bos=False))


@pytest.mark.parametrize("template", ["alpaca", "llama2-chat"])
def test_mask_and_eos_when_there_is_room(template):
    tok, r = CharTokenizer(), rec()
    p_len, r_len = _lengths(r, tok, template)
    ex = data.tokenize_record(r, tok, template, cutoff_len=p_len + r_len + 5)
    prompt = templates.prompt_ids(r, tok, template)
    assert ex["input_ids"] == prompt + tok.encode("xyz", bos=False) + [tok.eos_id]
    assert ex["labels"] == [IGNORE] * p_len + tok.encode("xyz", bos=False) + [tok.eos_id]
    assert ex["n_targets"] == r_len + 1 and not ex["truncated"]
    full = data.tokenize_record(r, tok, template, cutoff_len=p_len + r_len + 5, train_on_inputs=True)
    assert full["labels"] == full["input_ids"] and full["n_targets"] == p_len + r_len  # BOS is never a target


def test_no_eos_when_exactly_full_or_truncated():
    tok, r = CharTokenizer(), rec(output="abcdefghij")
    p_len, r_len = _lengths(r, tok)
    exact = data.tokenize_record(r, tok, "alpaca", cutoff_len=p_len + r_len)
    assert len(exact["input_ids"]) == p_len + r_len and exact["input_ids"][-1] != tok.eos_id
    assert not exact["truncated"]
    cut = data.tokenize_record(r, tok, "alpaca", cutoff_len=p_len + 4)
    assert cut["input_ids"] == templates.prompt_ids(r, tok, "alpaca") + tok.encode("abcd", bos=False)
    assert cut["labels"][p_len:] == tok.encode("abcd", bos=False) and cut["truncated"]
    one_short = data.tokenize_record(r, tok, "alpaca", cutoff_len=p_len + r_len + 1)
    assert one_short["input_ids"][-1] == tok.eos_id and len(one_short["input_ids"]) == p_len + r_len + 1


def test_prompt_longer_than_cutoff_leaves_no_target_and_is_dropped():
    tok, records = CharTokenizer(), {"0": rec(inp="q" * 300), "1": rec()}
    ex = data.tokenize_record(records["0"], tok, "alpaca", cutoff_len=50)
    assert ex["labels"] == [IGNORE] * 50 and ex["n_targets"] == 0
    kept, counts = data.tokenize_ids(records, ["0", "1"], tok, "alpaca", 300, False)
    assert [e["id"] for e in kept] == ["1"] and counts["no_target_ids"] == ["0"]


def test_no_input_uses_short_prompt_and_chat_uses_system():
    tok = CharTokenizer()
    assert templates.prompt_ids(rec(inp=""), tok, "alpaca") == tok.encode(
        templates.ALPACA_PROMPT_NO_INPUT.format(instruction="I"))
    assert templates.prompt_ids(rec(), tok, "llama2-chat") == tok.encode_chat(
        [{"role": "system", "content": "I"}, {"role": "user", "content": "ab"}])


def test_real_llama2_tokenizer_templates(llama2_tokenizer_path):
    from minillama import Tokenizer

    tok = Tokenizer(llama2_tokenizer_path)
    r = rec("If you are a doctor, answer.", "I have a cough.", "You may have a cold.")
    ex = data.tokenize_record(r, tok, "alpaca", cutoff_len=256)
    prompt = tok.encode(templates.ALPACA_PROMPT.format(instruction=r["instruction"], input=r["input"]))
    assert ex["input_ids"][: len(prompt)] == prompt and ex["input_ids"][-1] == 2
    assert tok.decode([t for t in ex["labels"] if t != IGNORE]) == "You may have a cold."
    chat = data.tokenize_record(r, tok, "llama2-chat", cutoff_len=256)
    assert tok.decode(chat["input_ids"]).startswith("[INST] <<SYS>>\nIf you are a doctor, answer.\n<</SYS>>")
    # In Meta's format the answer follows "[/INST] "; encoded alone it gets the same pieces.
    joint = tok.encode("[INST] x [/INST] You may have a cold.", bos=False)
    assert joint[-len(tok.encode(r["output"], bos=False)):] == tok.encode(r["output"], bos=False)


def write(path, records, jsonl=False):
    text = "\n".join(json.dumps(r) for r in records) if jsonl else json.dumps(records)
    path.write_text(text)
    return path


@pytest.mark.parametrize("jsonl", [False, True])
def test_malformed_records_reported_with_file_and_index(tmp_path, jsonl):
    bad = [rec(), {"instruction": "I", "output": "o"}, rec(output=3), rec(output="  "), "text", rec()]
    path = write(tmp_path / ("d.jsonl" if jsonl else "d.json"), bad, jsonl)
    records, report = rec_io.load_records(path, "skip")
    assert list(records) == ["0", "5"]
    assert report["format"] == ("jsonl" if jsonl else "json")
    assert (report["total"], report["kept"], report["skipped"]) == (6, 2, 4)
    assert [(p["file"], p["index"]) for p in report["problems"]] == [(str(path), i) for i in (1, 2, 3, 4)]
    problems = [p["problem"] for p in report["problems"]]
    assert problems == ["missing field 'input'", "field 'output' is int, not a string", "empty output",
                        "not a JSON object but str"]
    with pytest.raises(rec_io.DataError, match=rf"{path.name}: record 1: missing field 'input'"):
        rec_io.load_records(path, "stop")


def test_broken_json_and_jsonl_line(tmp_path):
    broken = tmp_path / "d.json"
    broken.write_text('[{"a": ')
    with pytest.raises(rec_io.DataError, match=r"d.json: invalid JSON at line 1"):
        rec_io.load_records(broken)
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(rec()) + "\n{oops\n" + json.dumps(rec()) + "\n")
    records, report = rec_io.load_records(path)
    assert list(records) == ["0", "2"] and report["problems"][0]["problem"].startswith("line 2: invalid JSON")


def test_split_is_stable_under_seed_and_disjoint():
    ids = [str(i) for i in range(500)]
    train, val = data.split_ids(ids, 120, seed=42)
    assert (train, val) == data.split_ids(list(reversed(ids)), 120, seed=42)
    assert len(val) == 120 and not set(train) & set(val) and sorted(train + val, key=int) == ids
    assert data.split_ids(ids, 120, seed=43)[1] != val
    assert data.epoch_order(10, 42, 0) == data.epoch_order(10, 42, 0) != data.epoch_order(10, 42, 1)


def test_genmedgpt_split_of_the_real_file(genmedgpt_path):
    records, report = rec_io.load_records(genmedgpt_path)
    assert report["total"] == 5452 and sha256_file(genmedgpt_path) == rec_io.GENMEDGPT_SHA256
    train, val = data.split_ids(list(records), 120, seed=42)
    assert len(val) == 120 and len(train) == report["kept"] - 120


@pytest.mark.parametrize("spec, embedded", [("genmedgpt-5k@download", True), ("genmedgpt-5k", False)])
def test_download_unreachable_says_how_to_pass_data(tmp_path, monkeypatch, spec, embedded):
    """The download is reached by name (`@download`), or when the embedded copy is missing from the install."""
    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path))
    monkeypatch.setattr(rec_io, "GENMEDGPT_URL", "http://127.0.0.1:9/chatdoctor5k.json")
    if not embedded:
        monkeypatch.setattr(rec_io, "GENMEDGPT_EMBEDDED", tmp_path / "absent.json.gz")
    with pytest.raises(rec_io.DataError, match=r"download failed .* pass --data PATH"):
        rec_io.resolve_dataset(spec)
    assert not list(tmp_path.iterdir())


def test_demo_dataset_shape_and_own_words():
    records = demo_data.make_records(60, seed=0)
    assert len(records) == 60 and all(set(r) == {"instruction", "input", "output"} for r in records)
    assert records == demo_data.make_records(60, seed=0)
    assert all(r["output"].strip() and r["input"].strip() for r in records)


def test_no_usable_record_names_the_first_problem(tmp_path):
    path = write(tmp_path / "other.jsonl", [{"question": "q", "answer": "a"}] * 3, jsonl=True)
    with pytest.raises(rec_io.DataError) as e:
        rec_io.usable_records(path)
    assert str(e.value) == (f"{path}: none of 3 records is usable (first: record 0: missing field 'instruction'; "
                            "see --on-bad-record)")
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(rec_io.DataError, match="empty.json: holds no records"):
        rec_io.usable_records(tmp_path / "empty.json")
