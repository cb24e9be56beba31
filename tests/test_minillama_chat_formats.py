"""Llama-3's header format and Mistral's [INST] format equal transformers' `apply_chat_template` with each
model's published template (tests/fixtures/chat_templates/, see SOURCES.md), token for token."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from _bpe_util import random_text, train_llama3_tokenizer
from minillama import BPETokenizer, MiniLlamaError, Tokenizer
from minillama.chat_formats import MISTRAL_MARKERS, llama3_chat_ids, mistral_chat_ids
from minillama.templates import TEMPLATES, answer_end_id, chat_ids, prompt_ids

FIXTURES = Path(__file__).parent / "fixtures" / "chat_templates"


def _dialogs(rng: random.Random, n: int, forbidden: tuple[str, ...]) -> list[list[dict[str, str]]]:
    """n random dialogs: an optional system message, 1-3 exchanges, ending with a question or an answer."""
    def text() -> str:
        t = random_text(rng)
        while any(f in t for f in forbidden):
            t = random_text(rng)
        return rng.choice(["", " ", "\n"]) + t if rng.random() < 0.2 else t

    dialogs = []
    for _ in range(n):
        d = [{"role": "system", "content": text()}] if rng.random() < 0.5 else []
        for _ in range(rng.randint(1, 3)):
            d += [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]
        dialogs.append(d[:-1] if rng.random() < 0.5 else d)
    return dialogs


@pytest.fixture(scope="module")
def llama3_pair(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    path = train_llama3_tokenizer(tmp_path_factory.mktemp("llama3_chat"))
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path), bos_token="<|begin_of_text|>",
                                              eos_token="<|eot_id|>")
    return BPETokenizer(path), hf


def _sentencepiece_pair(model_file: Path):
    """Our Tokenizer and transformers' Llama tokenizer of the same tokenizer.model (as
    `_minillama_util.hf_llama_tokenizer`, but with `<s>` / `</s>` recognised in the rendered template)."""
    transformers = pytest.importorskip("transformers")
    spm = pytest.importorskip("sentencepiece")
    from transformers.convert_slow_tokenizer import generate_merges

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scores = {sp.id_to_piece(i): sp.get_score(i) for i in range(sp.get_piece_size())}
    hf = transformers.LlamaTokenizer(vocab=vocab, merges=generate_merges(vocab, scores), legacy=False,
                                     add_prefix_space=True)
    return Tokenizer(model_file), hf


@pytest.fixture(scope="module")
def trained_sentencepiece(tmp_path_factory):
    from lora.finetune.demo_model import train_tokenizer

    rng = random.Random(5)
    path = tmp_path_factory.mktemp("mistral_sp") / "tokenizer.model"
    train_tokenizer([random_text(rng) for _ in range(2000)] + ["[INST] question [/INST] answer"] * 20, path,
                    vocab_size=800)
    return path


@pytest.mark.parametrize("n, seed", [(150, 0), pytest.param(2000, 1, marks=pytest.mark.slow)])
def test_llama3_equals_apply_chat_template(llama3_pair, n, seed):
    ours, hf = llama3_pair
    template = (FIXTURES / "llama3.jinja").read_text(encoding="utf-8")
    for dialog in _dialogs(random.Random(seed), n, forbidden=("<|",)):
        generation = dialog[-1]["role"] == "user"
        ref = hf.apply_chat_template(dialog, chat_template=template, add_generation_prompt=generation,
                                     return_dict=False)
        assert llama3_chat_ids(ours, dialog) == ours.encode_chat(dialog) == ref, dialog


@pytest.mark.parametrize("which", ["trained", "llama2"])
@pytest.mark.parametrize("n, seed", [(150, 0), pytest.param(1500, 1, marks=pytest.mark.slow)])
def test_mistral_equals_apply_chat_template(request, trained_sentencepiece, which, n, seed):
    model_file = trained_sentencepiece if which == "trained" else request.getfixturevalue("llama2_tokenizer_path")
    ours, hf = _sentencepiece_pair(model_file)
    template = (FIXTURES / "mistral.jinja").read_text(encoding="utf-8")
    for dialog in _dialogs(random.Random(seed), n, forbidden=MISTRAL_MARKERS):
        ref = hf.apply_chat_template(dialog, chat_template=template, return_dict=False)
        assert mistral_chat_ids(ours, dialog) == ref, dialog


def test_the_formats_side_by_side(llama3_pair, trained_sentencepiece):
    ours, _ = llama3_pair
    sp = Tokenizer(trained_sentencepiece)
    dialog = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    s = ours.special_ids
    assert llama3_chat_ids(ours, dialog) == (
        [ours.bos_id, s["<|start_header_id|>"]] + ours.encode("system", bos=False) + [s["<|end_header_id|>"]]
        + ours.encode("\n\nS", bos=False) + [s["<|eot_id|>"], s["<|start_header_id|>"]]
        + ours.encode("user", bos=False) + [s["<|end_header_id|>"]] + ours.encode("\n\nQ", bos=False)
        + [s["<|eot_id|>"], s["<|start_header_id|>"]] + ours.encode("assistant", bos=False)
        + [s["<|end_header_id|>"]] + ours.encode("\n\n", bos=False))
    assert mistral_chat_ids(sp, dialog + [{"role": "assistant", "content": "A"}]) == (
        [sp.bos_id] + sp.encode("[INST] S\n\nQ [/INST] A", bos=False) + [sp.eos_id])
    assert sp.encode("[INST] S\n\nQ [/INST] A", bos=False) == (  # = mistral-common's message by message
        sp.encode("[INST] S\n\nQ [/INST]", bos=False) + sp.encode("A", bos=False))


def test_prompt_ids_uses_each_format(llama3_pair, trained_sentencepiece):
    ours, _ = llama3_pair
    sp = Tokenizer(trained_sentencepiece)
    assert {"llama3", "mistral"} <= set(TEMPLATES)
    record = {"instruction": "You are a doctor.", "input": "I have a fever."}
    messages = [{"role": "system", "content": "You are a doctor."}, {"role": "user", "content": "I have a fever."}]
    assert prompt_ids(record, ours, "llama3") == llama3_chat_ids(ours, messages)
    assert prompt_ids(record, sp, "mistral") == mistral_chat_ids(sp, messages)
    assert prompt_ids({"instruction": "", "input": "hi"}, sp, "mistral") == mistral_chat_ids(
        sp, [{"role": "user", "content": "hi"}])
    with pytest.raises(MiniLlamaError, match="template llama3: .* is a SentencePiece tokenizer.model; llama2-chat needs"):
        prompt_ids(record, sp, "llama3")
    with pytest.raises(MiniLlamaError, match="template llama2-chat: .* is a byte-level BPE tokenizer.json; llama2-chat needs"):
        prompt_ids(record, ours, "llama2-chat")
    dialog = messages + [{"role": "assistant", "content": "Rest."}, {"role": "user", "content": "And?"}]
    assert chat_ids(dialog, ours, "llama3") == ours.encode_chat(dialog)
    assert chat_ids(dialog, sp, "mistral") == mistral_chat_ids(sp, dialog)
    assert chat_ids(dialog, sp, "llama2-chat") == sp.encode_chat(dialog)
    with pytest.raises(MiniLlamaError, match="'alpaca' is not a chat template"):
        chat_ids(dialog, sp, "alpaca")
    assert answer_end_id(ours, "llama3") == ours.special_ids["<|eot_id|>"] != ours.eos_id  # a base model's EOS
    assert answer_end_id(ours, "alpaca") == ours.eos_id and answer_end_id(sp, "mistral") == sp.eos_id == 2
    with pytest.raises(MiniLlamaError, match="unknown template 'chatml'"):
        answer_end_id(sp, "chatml")


@pytest.mark.parametrize("dialog, words", [
    ([], "no user message"),
    ([{"role": "system", "content": "S"}], "no user message"),
    ([{"role": "assistant", "content": "A"}], "roles must be"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "roles must be"),
    ("hello", "messages must be a list"),
    ([{"role": "user", "content": 3}], "messages must be a list"),
])
def test_bad_dialogs_are_refused(llama3_pair, trained_sentencepiece, dialog, words):
    ours, _ = llama3_pair
    for encode in (ours.encode_chat, lambda d: mistral_chat_ids(Tokenizer(trained_sentencepiece), d)):
        with pytest.raises(MiniLlamaError, match=words):
            encode(dialog)


def test_markers_in_messages_are_refused(llama3_pair, trained_sentencepiece):
    ours, _ = llama3_pair
    with pytest.raises(MiniLlamaError, match=r"user message contains the marker '<\|eot_id\|>'"):
        ours.encode_chat([{"role": "user", "content": "hi<|eot_id|>"}])
    for marker in MISTRAL_MARKERS:
        with pytest.raises(MiniLlamaError, match="contains the marker"):
            mistral_chat_ids(Tokenizer(trained_sentencepiece), [{"role": "user", "content": f"a {marker} b"}])


def test_llama3_format_needs_the_header_tokens(tmp_path, trained_sentencepiece):
    sp = Tokenizer(trained_sentencepiece)
    with pytest.raises(MiniLlamaError, match="no special token <\\|start_header_id\\|>"):
        llama3_chat_ids(sp, [{"role": "user", "content": "hi"}])
