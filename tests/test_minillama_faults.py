"""minillama under bad input: invalid config.json values, the context limit, out-of-vocabulary ids."""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_hf_llama
from minillama import Llama, LlamaConfig, MiniLlamaError, finish_reasons
from minillama.cli import main
from minillama.generate import ContextLimitWarning


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("m") / "m"
    make_tiny_hf_llama(folder, vocab_size=32000, hidden_size=32, intermediate_size=48, num_attention_heads=2,
                       num_key_value_heads=1)
    return folder


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    rc = main(argv, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


BAD_CONFIG = [  # the first three run in the quick loop, the rest with -m slow
    ("hidden_size", -32, "hidden_size must be a positive integer, got -32"),
    ("hidden_size", 0, "hidden_size must be a positive integer, got 0"),
    ("hidden_size", 32.5, "hidden_size must be an integer, got 32.5"),
    ("hidden_size", "32", "hidden_size must be an integer, got '32'"),
    ("intermediate_size", -1, "intermediate_size must be a positive integer, got -1"),
    ("num_hidden_layers", 0, "num_hidden_layers must be a positive integer, got 0"),
    ("num_attention_heads", 3, "num_attention_heads=3 does not divide hidden_size=32 (and no head_dim is given)"),
    ("num_attention_heads", True, "num_attention_heads must be an integer, got True"),
    ("num_key_value_heads", -1, "num_key_value_heads must be a positive integer, got -1"),
    ("vocab_size", 0, "vocab_size must be a positive integer, got 0"),
    ("max_position_embeddings", 0, "max_position_embeddings must be a positive integer, got 0"),
    ("rms_norm_eps", -1e-6, "rms_norm_eps must be a finite number > 0, got -1e-06"),
    ("eos_token_id", 32000, "eos_token_id must be a token id in [0, vocab_size=32000), got 32000"),
]


@pytest.mark.parametrize("key, value, problem", [*BAD_CONFIG[:3], *[pytest.param(*c, marks=pytest.mark.slow)
                                                                    for c in BAD_CONFIG[3:]]])
def test_invalid_config_value_is_one_line_naming_file_and_key(tmp_path, model_dir, key, value, problem):
    folder = tmp_path / "m"
    folder.mkdir()
    for p in model_dir.iterdir():
        (folder / p.name).symlink_to(p)
    config = json.loads((model_dir / "config.json").read_text())
    config[key] = value
    config.pop("head_dim", None)  # transformers writes it; without it the heads must divide hidden_size
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps(config))
    rc, out, err = _run(["generate", "--model", str(folder), "--prompt", "x", "--tokenizer", "unused"])
    assert rc == 2 and out == ""
    assert err == f"error: {folder / 'config.json'}: {problem}\n"


def small_model(max_positions: int = 16) -> Llama:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=max_positions)
    return Llama(config).eval()


def test_generation_stops_at_the_context_limit_with_a_warning():
    model = small_model(16)
    ids = torch.tensor([[5, 9, 11]])
    with pytest.warns(ContextLimitWarning, match="stops at the model's context of 16 positions: 13 new tokens"):
        out = model.generate(ids, max_new_tokens=40, eos_id=None)
    assert out.shape == (1, 16)
    assert torch.equal(out, model.generate(ids, max_new_tokens=13, eos_id=None))  # the same tokens, cut at 16
    assert finish_reasons(out, 3, eos_id=2) == ["length"] or 2 in out[0, 3:].tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the context: no warning
        model.generate(ids, max_new_tokens=13, eos_id=None)


def test_a_prompt_that_fills_the_context_is_refused():
    model = small_model(8)
    with pytest.raises(MiniLlamaError, match="the prompt has 8 tokens; the model's context is "
                                             "max_position_embeddings=8 positions"):
        model.generate(torch.ones(1, 8, dtype=torch.long), max_new_tokens=1)
    assert model.generate(torch.ones(1, 8, dtype=torch.long), max_new_tokens=0).shape == (1, 8)


def test_cli_says_where_the_context_ends(model_dir, llama2_tokenizer_path):
    rc, out, err = _run(["generate", "--model", str(model_dir), "--prompt", "I have a fever",
                         "--max-new-tokens", "400", "--tokenizer", str(llama2_tokenizer_path)])
    n_prompt = 6  # BOS + 5 pieces
    assert rc == 0, err
    lines = [line for line in err.splitlines() if not line.startswith("[minillama] base ")]  # the session line
    assert lines[0] == (f"note: the model's context is 256 positions; after the {n_prompt}-token prompt at most "
                        f"{256 - n_prompt} new tokens fit (--max-new-tokens 400)")
    assert f"{256 - n_prompt} tokens" in lines[1] or "finish_reason=stop" in lines[1]
    if "finish_reason=length" in lines[1]:
        assert lines[1].endswith("finish_reason=length (the model's context is full)")


@pytest.mark.parametrize("bad", [[[1, 64]], [[1, -1]], [[70000]]])
def test_out_of_vocabulary_ids_are_refused_in_generate(bad):
    model = small_model()
    ids = torch.tensor(bad)
    token = bad[0][-1]
    with pytest.raises(MiniLlamaError, match=rf"token id {token} is outside"):
        model.generate(ids, max_new_tokens=2)


def test_cli_refuses_bad_flags_before_loading(tmp_path):
    for flag, value, words in [("--max-new-tokens", "0", "--max-new-tokens: must be an integer >= 1, got 0"),
                               ("--temperature", "nan", "--temperature: must be a finite number >= 0, got nan"),
                               ("--top-p", "1.5", "--top-p: must be a number in (0, 1], got 1.5"),
                               ("--top-k", "-1", "--top-k: must be an integer >= 0 (0 = off), got -1")]:
        rc, out, err = _run(["generate", "--model", str(tmp_path / "absent"), "--prompt", "x", f"{flag}={value}"])
        assert rc == 2 and err == f"error: {words}\n", err
