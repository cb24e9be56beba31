"""Helpers shared by the minillama tests (the fixtures themselves live in conftest.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from minillama import left_pad


def hf_llama_tokenizer(model_file: Path):
    """transformers' Llama tokenizer built from a SentencePiece `tokenizer.model` with Meta's semantics.

    transformers 5.x only ships the `tokenizers`-backed LlamaTokenizer (LlamaTokenizerFast is an alias) and
    its converter needs protobuf to read the .model file. We build the same BPE without protobuf: the
    vocabulary in id order and the merges ranked by the pieces' SentencePiece scores (what
    `generate_merges(vocab, vocab_scores)` does), then pass
      - add_prefix_space=True: SentencePiece's `add_dummy_prefix` (Llama's model has it on);
      - legacy=False: the non-legacy Metaspace handling of the first token;
      - split_special_tokens=True: Meta's tokenizer treats "<s>"/"</s>" in text as plain text.
    """
    transformers = pytest.importorskip("transformers")
    spm = pytest.importorskip("sentencepiece")
    from transformers.convert_slow_tokenizer import generate_merges

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scores = {sp.id_to_piece(i): sp.get_score(i) for i in range(sp.get_piece_size())}
    return transformers.LlamaTokenizer(vocab=vocab, merges=generate_merges(vocab, scores), legacy=False,
                                       add_prefix_space=True, split_special_tokens=True)


def greedy_left_padded_equals_transformers(hf, model, seed: int, lengths, low: int, high: int, new_tokens: int,
                                           cuda_graph: bool):
    """Greedy decoding of a left-padded batch of random prompts equals transformers' `generate`;
    returns the prompts and our output."""
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(low, high, (n,), generator=g).tolist() for n in lengths]
    ids, mask = left_pad(prompts, pad_id=0)
    ref = hf.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False, eos_token_id=None,
                      pad_token_id=0)
    ours = model.generate(ids, max_new_tokens=new_tokens, attention_mask=mask, eos_id=None, cuda_graph=cuda_graph)
    assert torch.equal(ours, ref)
    return prompts, ours
