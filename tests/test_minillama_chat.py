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
