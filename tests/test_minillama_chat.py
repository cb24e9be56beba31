"""Talking to a trained model: `python -m minillama generate` with --adapter, --template, a run folder as
--model, and --interactive; the answer equals `lora.load_adapter` + `generate` on the same prompt."""
from __future__ import annotations

import io
import json

import pytest
import torch

import lora
from _train_util import train_args
from medlora_scripts import train
from minillama import Llama, Tokenizer, templates
from minillama.chat import resolve_session
from minillama.cli import main


@pytest.fixture(scope="module")
def run(tiny_train, tmp_path_factory):
    """A finished 2-step run on the tiny base (its adapter differs from zero)."""
    out = tmp_path_factory.mktemp("chat") / "run"
    return train.run(train_args(tiny_train, out, "--max-steps", "2"))


def cli(argv, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    import minillama.cli as c
    args = c.build_parser().parse_args(argv)
    rc = c.run_generate(args, out, err, io.StringIO(stdin)) if "--interactive" in argv else main(argv, out, err)
    return rc, out.getvalue(), err.getvalue()


def expected_answer(base, adapter_dir, ids, n) -> str:
    tok = Tokenizer(base / "tokenizer.model")
    model = Llama.from_pretrained(base)
    if adapter_dir is not None:
        lora.load_adapter(model, adapter_dir)
    model.eval()
    out = model.generate(torch.tensor([ids]), n, eos_id=tok.eos_id)[0, len(ids):].tolist()
    return tok.decode(out[: out.index(tok.eos_id)] if tok.eos_id in out else out)


def test_run_folder_as_model_applies_its_adapter_template_and_instruction(run, tiny_train):
    base = tiny_train[0]
    rc, out, err = cli(["generate", "--model", str(run), "--prompt", "I have a fever and chills.",
                        "--max-new-tokens", "10"])
    assert rc == 0, err
    split = json.loads((run / "split.json").read_text())
    assert split["instruction"]  # the demo records' shared instruction
    tok = Tokenizer(base / "tokenizer.model")
    ids = templates.prompt_ids({"instruction": split["instruction"], "input": "I have a fever and chills."}, tok,
                               "alpaca")
    assert out == expected_answer(base, run / "adapter", ids, 10) + "\n"
    assert f"adapter {run / 'adapter'}" in err and "template alpaca (from training run" in err


def test_adapter_flag_equals_load_adapter_and_generate(run, tiny_train):
    base = tiny_train[0]
    rc, out, _ = cli(["generate", "--model", str(base), "--adapter", str(run / "adapter_last"), "--prompt", "Hello",
                      "--template", "none", "--max-new-tokens", "8"])
    tok = Tokenizer(base / "tokenizer.model")
    assert rc == 0 and out == expected_answer(base, run / "adapter_last", tok.encode("Hello"), 8) + "\n"
    plain = cli(["generate", "--model", str(base), "--prompt", "Hello", "--max-new-tokens", "8"])[1]
    assert plain == expected_answer(base, None, tok.encode("Hello"), 8) + "\n"


def test_session_rules(run, tiny_train, tmp_path):
    base = str(tiny_train[0])
    s = resolve_session(base, str(run))  # a run folder as --adapter
    assert (s.base, s.adapter, s.template) == (base, run / "adapter", "alpaca")
    assert resolve_session(base, str(run), template="llama2-chat").template == "llama2-chat"
    assert resolve_session(base).template == "none" and resolve_session(base, chat=True).template == "llama2-chat"
    moved = tmp_path / "moved"  # a run without base/ whose recorded base is gone: say what to pass
    moved.mkdir()
    (moved / "config.json").write_text(json.dumps({"base": "/nowhere/base", "resolved": {"base_path": "/nowhere"}}))
    (moved / "adapter").mkdir()
    with pytest.raises(Exception, match=r"pass the base with --model BASE and the run with --adapter"):
        resolve_session(str(moved))
    with pytest.raises(Exception, match=r"--adapter .*: not a LoRA adapter folder"):
        resolve_session(base, str(tmp_path))


def test_interactive_conversation_keeps_the_turns(run, tiny_train):
    rc, out, err = cli(["generate", "--model", str(run), "--interactive", "--max-new-tokens", "4"],
                       stdin="I have a cough.\nIs it serious?\n\n")
    assert rc == 0, err
    assert out.count("model> ") == 2 and err.count("you> ") == 3  # two answers, then the empty line ends it


def test_errors_are_one_line(run, tiny_train):
    rc, out, err = cli(["generate", "--model", str(run)])
    assert rc != 0 and err.strip().startswith("error: --prompt") and err.count("\n") == 1


def test_train_help_shows_every_default():
    """scripts/train.py --help: each field's flag says its reason and its default (and the paper's value)."""
    import dataclasses

    from lora.finetune.config import PRESETS, TrainConfig
    from lora.finetune.flags import build_parser

    helps = {a.dest: a.help for a in build_parser()._actions}
    for f in dataclasses.fields(TrainConfig):
        demo = PRESETS["demo"].get(f.name, f.default)
        shown = ",".join(demo) if isinstance(demo, tuple) else repr(demo) if demo == "" else str(demo)
        assert f.metadata["help"].replace("%", "%%") in helps[f.name] and f"default: {shown}" in helps[f.name], f.name
    assert "--preset paper: 3e-05" in helps["learning_rate"] and "--preset paper: 1" in helps["batch_size"]


def test_a_large_max_new_tokens_keeps_the_conversation(run, monkeypatch):
    """--max-new-tokens at or above the context used to empty the history on every turn (prompt lengths 61, 62,
    61); now the answer is capped at what the context leaves (said once) and the turns stay while they fit."""
    import minillama.cli as c

    seen = []
    real = c.fit_turns

    def spy(session, tokenizer, history, *rest):
        before = len(history)
        ids, dropped = real(session, tokenizer, history, *rest)
        seen.append((before, dropped, len(ids)))
        return ids, dropped
    monkeypatch.setattr(c, "fit_turns", spy)
    rc, out, err = cli(["generate", "--model", str(run), "--interactive", "--max-new-tokens", "100000"],
                       stdin="I have a cough.\nIs it serious?\nWhat should I take?\n\n")
    assert rc == 0, err
    assert out.count("model> ") == 3 and err.count("note: the model's context is") <= 1
    assert seen[1][:2] == (1, 0) and seen[1][2] > seen[0][2]  # the first turn stays in the second prompt
    assert err.count("oldest turns are left out") <= 1  # said once, if at all (a long answer fills the context)


def test_turns_are_dropped_oldest_first_only_when_they_no_longer_fit(run, tiny_train):
    from minillama.chat import Session
    from minillama.cli import fit_turns

    tok = Tokenizer(tiny_train[0] / "tokenizer.model")
    session = Session(base=str(tiny_train[0]), template="alpaca", instruction="Answer.")
    history = [(f"question {i} " * 20, f"answer {i} " * 20) for i in range(6)]
    full = len(fit_turns(session, tok, list(history), "last one", None, 10, 10**6)[0])
    kept = list(history)
    ids, dropped = fit_turns(session, tok, kept, "last one", None, 10**6, full + 50)  # reserve: a quarter
    assert dropped >= 1 and kept == history[dropped:] and len(ids) + (full + 50) // 4 <= full + 50
    again = list(history)
    assert fit_turns(session, tok, again, "last one", None, 10, full + 10) == (ids[:0] + fit_turns(
        session, tok, list(history), "last one", None, 10, 10**6)[0], 0) and again == history


def test_a_message_too_long_for_the_context_is_refused_and_the_conversation_goes_on(run):
    long = "fever " * 2000
    rc, out, err = cli(["generate", "--model", str(run), "--interactive", "--max-new-tokens", "4"],
                       stdin=f"{long}\nI have a cough.\n\n")
    assert rc == 0, err
    assert "error: this message takes" in err and "max_position_embeddings" in err and out.count("model> ") == 1


@pytest.mark.parametrize("argv, words", [
    (["--prompt", "  "], "--prompt: is empty"),
    (["--prompt", "hi", "--seed", str(2**70)], "--seed: must be an integer in [0, 2**64)"),
])
def test_bad_prompt_and_seed_are_one_line(run, argv, words):
    rc, out, err = cli(["generate", "--model", str(run), *argv])
    assert rc == 2 and err.strip().startswith("error: ") and words in err and err.count("\n") == 1, err


def test_a_run_folder_without_adapter_or_checkpoint_says_what_it_lacks(tmp_path, tiny_train):
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.json").write_text(json.dumps({"base": str(tiny_train[0]), "lora_r": 8, "template": "alpaca"}))
    rc, out, err = cli(["generate", "--model", str(started), "--prompt", "hi"])
    assert rc == 2 and "holds neither an adapter nor a checkpoint yet" in err and err.count("\n") == 1, err
