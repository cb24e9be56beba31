"""The byte-level BPE tokenizer (Llama-3's `tokenizer.json`) equals the `tokenizers` library: a tokenizer
trained in the test with Llama-3's split pattern, thousands of strings, encode and decode."""
from __future__ import annotations

import json
import random
import unicodedata

import pytest
import torch

from _bpe_util import (LLAMA3_PATTERN, LLAMA3_SPECIAL, random_text, reference_tokenizer, train_llama3_tokenizer,
                       write_tokenizer_config)
from minillama import BPETokenizer, MiniLlamaError, Tokenizer, load_tokenizer
from minillama.bpe import bytes_to_unicode


@pytest.fixture(scope="module")
def llama3_tok(tmp_path_factory):
    """(folder, our tokenizer, the reference) for a Llama-3-style tokenizer.json with one added token."""
    folder = tmp_path_factory.mktemp("llama3_tok")
    path = train_llama3_tokenizer(folder, added=("<think>",))
    return folder, BPETokenizer(path), reference_tokenizer(path)


def _sweep(ours, ref, texts):
    for text in texts:
        expected = ref.encode(text, add_special_tokens=False).ids
        assert ours.encode(text, bos=False) == expected, repr(text)
        assert ours.decode(expected) == ref.decode(expected, skip_special_tokens=True) == text, repr(text)


def test_encode_equals_tokenizers_on_5000_strings(llama3_tok):
    _, ours, ref = llama3_tok
    rng = random.Random(1)
    _sweep(ours, ref, [random_text(rng) for _ in range(5000)])


@pytest.mark.slow
def test_encode_equals_tokenizers_on_30000_long_strings(llama3_tok):
    _, ours, ref = llama3_tok
    rng = random.Random(2)
    _sweep(ours, ref, [random_text(rng, pieces=rng.randint(10, 80)) for _ in range(30000)])


def test_hard_cases_one_by_one(llama3_tok):
    _, ours, ref = llama3_tok
    cases = ["", " ", "   ", "\n", "\n\n\n", " \n", "a  b", "a\n\n b", "x   \n  y", "\t\t", "I'M HERE", "it'S",
             "'s", "1234567", "12 345", "3.14159", "日本語のテキスト", "e\u0301", "👨\u200d👩\u200d👧 family",
             "🇫🇷🇩🇪", "<think>why</think>", "a<think>", "<|eot_id|>", "<|begin_of_text|>hi", "[INST] x [/INST]",
             "\r\n\r\n", "trailing   ", "   leading", "\u00a0nbsp", "mixed 中文 and english 123abc", "ʼ"]
    _sweep(ours, ref, cases)


def test_special_tokens_are_text_and_added_tokens_are_matched(llama3_tok):
    folder, ours, ref = llama3_tok
    eot = ours.special_ids["<|eot_id|>"]
    assert eot not in ours.encode("a <|eot_id|> b")
    plain = reference_tokenizer(folder / "tokenizer.json")
    plain.encode_special_tokens = False  # tokenizers' default: special tokens in text become the token
    assert eot in plain.encode("a <|eot_id|> b", add_special_tokens=False).ids
    think = ours.bpe.added["<think>"]
    assert ours.encode("so <think>ing", bos=False) == ref.encode("so <think>ing", add_special_tokens=False).ids
    assert think in ours.encode("so <think>ing")


def test_llama3_layout_ids_bos_eos_and_pad(llama3_tok):
    folder, ours, _ = llama3_tok
    n_bpe = len(json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"])
    assert ours.vocab_size == n_bpe + 1 + len(LLAMA3_SPECIAL)  # BPE ids, "<think>", then the special tokens
    assert ours.bos_id == ours.special_ids["<|begin_of_text|>"] and ours.eos_id == ours.special_ids["<|end_of_text|>"]
    assert ours.eos_ids == (ours.eos_id, ours.special_ids["<|eot_id|>"])
    assert ours.pad_id == ours.eos_id
    ids = ours.encode("hello", bos=True, eos=True)
    assert ids[0] == ours.bos_id and ids[-1] == ours.eos_id and ours.decode(ids) == "hello"
    assert ours.encode_batch(["a b", "c"], bos=False) == [ours.encode("a b", bos=False), ours.encode("c", bos=False)]
    assert ours.path == folder / "tokenizer.json"


def test_config_files_set_bos_eos_pad_and_every_eos(tmp_path, llama3_tok):
    folder, ours, _ = llama3_tok
    (tmp_path / "tokenizer.json").symlink_to(folder / "tokenizer.json")
    write_tokenizer_config(tmp_path, eos={"content": "<|eot_id|>", "special": True},
                           pad_token="<|finetune_right_pad_id|>")
    s = ours.special_ids
    (tmp_path / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [s["<|end_of_text|>"], s["<|eom_id|>"], s["<|eot_id|>"]]}))
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, BPETokenizer)
    assert tok.eos_id == s["<|eot_id|>"] and tok.eos_ids == (s["<|eot_id|>"], s["<|end_of_text|>"], s["<|eom_id|>"])
    assert tok.pad_id == s["<|finetune_right_pad_id|>"]
    write_tokenizer_config(tmp_path, eos="<|no_such_token|>")
    with pytest.raises(MiniLlamaError, match=r"tokenizer_config.json: eos_token '<\|no_such_token\|>' is not a token"):
        load_tokenizer(tmp_path)


def test_decode_stops_at_any_eos_and_takes_tensors(llama3_tok):
    _, ours, _ = llama3_tok
    body = ours.encode("an answer", bos=False)
    eot = ours.special_ids["<|eot_id|>"]
    row = [ours.bos_id] + body + [eot] + ours.encode(" junk", bos=False) + [ours.pad_id] * 3
    assert ours.decode(row, stop_at_eos=True) == "an answer"
    assert ours.decode(torch.tensor(row)) == "an answer junk"  # special tokens (and padding) decode to nothing
    with pytest.raises(MiniLlamaError, match=f"{ours.vocab_size} is not a token id"):
        ours.decode([ours.vocab_size])


def test_a_character_cut_between_tokens_decodes_to_a_replacement_until_complete(llama3_tok):
    _, ours, _ = llama3_tok
    ids = ours.encode("🤖", bos=False)
    assert ours.decode(ids) == "🤖"
    if len(ids) > 1:  # the emoji's four bytes are split over several tokens
        assert ours.decode(ids[:1]).endswith("\ufffd")


@pytest.mark.parametrize("ignore_merges", [True, False])
def test_ignore_merges_takes_a_vocabulary_word_whole(tmp_path, llama3_tok, ignore_merges):
    folder, _, _ = llama3_tok
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["model"]["ignore_merges"] = ignore_merges
    spec["model"]["vocab"]["zqxj"] = new_id = max(t["id"] for t in spec["added_tokens"]) + 1  # no merge builds it
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    ours, ref = BPETokenizer(tmp_path / "tokenizer.json"), reference_tokenizer(tmp_path / "tokenizer.json")
    for text in ("zqxj", "a zqxj", "zqxjzqxj"):
        assert ours.encode(text, bos=False) == ref.encode(text, add_special_tokens=False).ids
    assert (ours.encode("zqxj", bos=False) == [new_id]) is ignore_merges


def test_gpt2_style_bytelevel_pre_tokenizer(tmp_path):
    path = train_llama3_tokenizer(tmp_path, vocab_size=600, gpt2=True)
    rng = random.Random(3)
    _sweep(BPETokenizer(path), reference_tokenizer(path), [random_text(rng) for _ in range(500)])


def test_bytes_to_unicode_is_gpt2s_map():
    pre_tokenizers = pytest.importorskip("tokenizers.pre_tokenizers")
    table = bytes_to_unicode()
    assert sorted(table.values()) == sorted(pre_tokenizers.ByteLevel.alphabet())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"


@pytest.mark.slow
def test_split_pattern_equals_tokenizers_on_every_assigned_character():
    """`regex` reads the pattern's \\p{L} / \\p{N} / \\s like tokenizers' Oniguruma for every character
    assigned in this Python's Unicode database (newer ones may differ: the two libraries' tables differ)."""
    tokenizers = pytest.importorskip("tokenizers")
    import regex

    from minillama.bpe import split_pattern

    pattern = regex.compile(split_pattern({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}, "test"))
    ref = tokenizers.pre_tokenizers.Split(tokenizers.Regex(LLAMA3_PATTERN), behavior="isolated")

    def ours(s):
        parts, start = [], 0
        for m in pattern.finditer(s):
            parts += [p for p in (s[start:m.start()], m.group()) if p]
            start = m.end()
        return parts + ([s[start:]] if s[start:] else [])

    for cp in range(0x30000):
        c = chr(cp)
        if unicodedata.category(c) in ("Cn", "Cs"):
            continue
        for s in (f"a{c}b", f" {c}1", f"x {c} 'S{c}"):
            assert ours(s) == [p for p, _ in ref.pre_tokenize_str(s)], hex(cp)


@pytest.mark.parametrize("change, words", [
    ({"normalizer": {"type": "NFC"}}, "normalizer 'NFC' is not supported"),
    ({"model": {"type": "Unigram"}}, "model.type='Unigram' is not supported"),
    ({"decoder": {"type": "Metaspace"}}, "decoder 'Metaspace' is not supported"),
    ({"pre_tokenizer": {"type": "Metaspace"}}, "pre_tokenizer 'Metaspace' is not supported"),
    ({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True}}, "add_prefix_space=true is not supported"),
])
def test_unsupported_tokenizer_json_is_one_line_naming_the_field(tmp_path, llama3_tok, change, words):
    folder, _, _ = llama3_tok
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec.update(change)
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(MiniLlamaError) as exc:
        BPETokenizer(tmp_path / "tokenizer.json")
    assert str(exc.value).startswith(str(tmp_path / "tokenizer.json")) and words in str(exc.value)
    assert "\n" not in str(exc.value)


def test_broken_files_are_one_line(tmp_path, llama3_tok):
    folder, _, _ = llama3_tok
    with pytest.raises(MiniLlamaError, match="tokenizer file not found"):
        BPETokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(MiniLlamaError, match="not valid JSON"):
        load_tokenizer(tmp_path / "tokenizer.json")
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["model"]["unk_token"] = "<unk>"
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(MiniLlamaError, match=r"model.unk_token '<unk>' is not in model.vocab"):
        BPETokenizer(tmp_path / "tokenizer.json")


@pytest.mark.parametrize("unk", [None, "e"])
def test_byte_symbols_missing_from_the_vocabulary_are_dropped_or_unk_as_tokenizers_does(tmp_path, llama3_tok, unk):
    """SmolLM2's vocabulary lacks 21 byte symbols: tokenizers drops such a byte (or writes unk_token), and
    its neighbours may then merge across the gap."""
    folder, _, _ = llama3_tok
    spec = json.loads((folder / "tokenizer.json").read_text())
    for symbol in ("Ġ", "Ċ", "Ã", "!", "o"):  # space, newline, the lead byte of most Latin-1 letters, ...
        del spec["model"]["vocab"][symbol]
    vocab = spec["model"]["vocab"]
    spec["model"]["merges"] = [m for m in spec["model"]["merges"]
                               if all(x in vocab for x in (*(m.split(" ") if isinstance(m, str) else m), "".join(
                                   m.split(" ") if isinstance(m, str) else m)))]
    spec["model"]["unk_token"] = unk
    spec["post_processor"] = None
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    ours, ref = BPETokenizer(tmp_path / "tokenizer.json"), reference_tokenizer(tmp_path / "tokenizer.json")
    rng = random.Random(7)
    texts = [random_text(rng) for _ in range(2000)] + ["a b", "hello world!", "café", " \n ", "oo", "!o!"]
    for text in texts:
        assert ours.encode(text) == ref.encode(text, add_special_tokens=False).ids, repr(text)


def test_encode_by_default_adds_what_the_post_processor_adds(llama3_tok):
    """`encode(text)` = tokenizers' `encode(text)` with the post_processor (Llama-3: BOS first, no EOS)."""
    _, ours, ref = llama3_tok
    rng = random.Random(3)
    for text in [random_text(rng) for _ in range(300)]:
        assert ours.encode(text) == ref.encode(text).ids, repr(text)
        assert ours.encode(text)[0] == ours.bos_id
    assert ours.encode_batch(["a", "b c"]) == [ref.encode("a").ids, ref.encode("b c").ids]


def test_load_tokenizer_picks_sentencepiece_or_bpe(tmp_path, llama3_tok, llama2_tokenizer_path):
    folder, _, _ = llama3_tok
    assert isinstance(load_tokenizer(folder), BPETokenizer)
    assert isinstance(load_tokenizer(folder / "tokenizer.json"), BPETokenizer)
    (tmp_path / "tokenizer.json").symlink_to(folder / "tokenizer.json")
    (tmp_path / "tokenizer.model").symlink_to(llama2_tokenizer_path)
    both = load_tokenizer(tmp_path)  # Mistral ships both: its SentencePiece model is the one it was trained with
    assert isinstance(both, Tokenizer) and both.eos_ids == (both.eos_id,) == (2,)
    with pytest.raises(MiniLlamaError, match="no tokenizer.model"):
        load_tokenizer(tmp_path / "..")


def test_a_hub_repo_without_tokenizer_model_gives_its_tokenizer_json(tmp_path, llama3_tok, monkeypatch):
    (tmp_path / "tokenizer.json").symlink_to(llama3_tok[0] / "tokenizer.json")
    write_tokenizer_config(tmp_path)
    asked = []

    def download_file(repo, name):  # a Llama-3 repo: tokenizer.json and its configs, no tokenizer.model
        asked.append(name)
        if name == "tokenizer.model":
            raise MiniLlamaError(f"{repo}: downloading {name} failed (404)", exit_code=2)
        return tmp_path / name

    monkeypatch.setattr("minillama.tokenizer.download_file", download_file)
    tok = load_tokenizer("meta-llama/Llama-3.1-8B")
    assert isinstance(tok, BPETokenizer) and tok.eos_id == tok.special_ids["<|eot_id|>"]
    assert asked == ["tokenizer.model", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                     "chat_template.jinja"]

    def offline(repo, name):
        raise MiniLlamaError(f"{repo}: offline", exit_code=1)

    monkeypatch.setattr("minillama.tokenizer.download_file", offline)
    with pytest.raises(MiniLlamaError, match="offline") as exc:
        load_tokenizer("meta-llama/Llama-3.1-8B")
    assert exc.value.exit_code == 1
