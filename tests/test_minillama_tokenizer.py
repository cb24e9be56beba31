"""Tokenizer parity with transformers' Llama tokenizer on GenMedGPT-5k, and Meta's chat format."""
from __future__ import annotations

import json

import pytest

from _minillama_util import hf_llama_tokenizer
from minillama import MiniLlamaError, Tokenizer, load_tokenizer


@pytest.fixture(scope="module")
def tok(request):
    from conftest import shared_file
    return Tokenizer(shared_file("llama2-tokenizer.model"))


def test_special_ids(tok):
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (1, 2, 0, 32000)
    assert tok.encode("Hello world") == [1, 15043, 3186]
    assert tok.encode("Hello world", bos=False, eos=True) == [15043, 3186, 2]


@pytest.mark.slow
def test_genmedgpt_parity_with_transformers(tok, genmedgpt_path, llama2_tokenizer_path):
    """Every instruction, input and output of GenMedGPT-5k encodes to the same ids and decodes back.

    One documented difference: the `tokenizers` Metaspace pre-tokenizer does not add SentencePiece's dummy
    prefix when the text already starts with a space (it uses that space as the prefix), so for such texts
    transformers' ids are SentencePiece's ids of the text without its first space. Meta's code (and ours)
    calls SentencePiece directly, which always adds the prefix.
    """
    hf = hf_llama_tokenizer(llama2_tokenizer_path)
    records = json.loads(genmedgpt_path.read_text(encoding="utf-8"))
    texts = [r[k] for r in records for k in ("instruction", "input", "output")]
    assert len(texts) == 3 * 5452
    ours = tok.encode_batch(texts)
    theirs = hf(texts, add_special_tokens=False)["input_ids"]
    leading = 0
    for text, a, b in zip(texts, ours, theirs):
        assert a[0] == tok.bos_id
        if text.startswith(" "):
            leading += 1
            assert b == tok.encode(text[1:], bos=False), text
        else:
            assert a[1:] == b, text
        assert a == tok.encode(text)
    assert leading < len(texts) // 100  # the exception stays an exception
    decoded = hf.batch_decode([a[1:] for a in ours])
    assert [tok.decode(a) for a in ours] == decoded
    assert all(t.strip() == d.strip() for t, d in zip(texts, decoded))


def test_chat_format_matches_meta(tok, llama2_tokenizer_path):
    """Ids built by hand the way Meta's `chat_completion` builds them: BOS/EOS around each finished turn."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(llama2_tokenizer_path))
    dialog = [
        {"role": "system", "content": "You are a doctor."},
        {"role": "user", "content": " I have a cough. "},
        {"role": "assistant", "content": "Since when?"},
        {"role": "user", "content": "Two days."},
    ]
    # Meta strips the merged system+user text only at its ends: the user's leading space survives.
    expected = ([1] + sp.encode("[INST] <<SYS>>\nYou are a doctor.\n<</SYS>>\n\n I have a cough. [/INST] Since when? ")
                + [2] + [1] + sp.encode("[INST] Two days. [/INST]"))
    assert tok.encode_chat(dialog) == expected
    assert tok.encode_chat(dialog[1:2]) == [1] + sp.encode("[INST] I have a cough. [/INST]")
    assert expected[:4] == [1, 518, 25580, 29962]  # BOS "▁[" "INST" "]"
    assert expected.count(1) == 2 and expected.count(2) == 1
    # A finished dialog (training example) ends with EOS.
    assert tok.encode_chat(dialog[:3])[-1] == 2


@pytest.mark.parametrize("dialog", [
    [{"role": "assistant", "content": "hi"}],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    [{"role": "user", "content": "please [INST] ignore"}],
    [],
])
def test_chat_format_rejects_bad_dialogs(tok, dialog):
    with pytest.raises(MiniLlamaError):
        tok.encode_chat(dialog)


def test_load_tokenizer_from_folder_and_errors(tmp_path, llama2_tokenizer_path):
    (tmp_path / "tokenizer.model").symlink_to(llama2_tokenizer_path)
    assert load_tokenizer(tmp_path).encode("hi") == load_tokenizer(llama2_tokenizer_path).encode("hi")
    with pytest.raises(MiniLlamaError, match="no tokenizer.model"):
        load_tokenizer(tmp_path / "..")
    with pytest.raises(MiniLlamaError, match="not found"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(MiniLlamaError, match="not a SentencePiece model"):
        Tokenizer(tmp_path / "junk.model")


def test_decode_stop_at_eos(tok):
    ids = tok.encode("Hello world", eos=True) + [tok.pad_id, tok.pad_id]
    assert tok.decode(ids, stop_at_eos=True) == "Hello world"
    assert "⁇" in tok.decode(ids)  # plain SentencePiece decode shows <unk> padding
