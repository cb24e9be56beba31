"""A model's own chat template (`minillama.chat_template`) equals transformers' `apply_chat_template`, token
for token: ChatML (SmolLM2's real folder and a tiny tokenizer), Qwen2.5 (a default system message), Llama-3,
Zephyr-style, Llama-2 and Mistral (SentencePiece); the answer spans training uses; the hand-written formats
equal the Jinja rendering of the real templates; bad templates are one line; `--template model` trains."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from _bpe_util import random_text, train_llama3_tokenizer, write_tokenizer_config
from minillama import BPETokenizer, MiniLlamaError, Tokenizer, load_tokenizer
from minillama.chat_formats import MISTRAL_MARKERS, llama3_chat_ids, mistral_chat_ids
from minillama.chat_template import ChatTemplate, answer_span, chat_template_ids, find_chat_template
from minillama.templates import TEMPLATES, answer_end_id, chat_ids, prompt_ids, response_ids

FIXTURES = Path(__file__).parent / "fixtures" / "chat_templates"
SMOLLM2 = Path("/work/ref/smollm2-hf")
CHATML_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# Zephyr-style (the layout of HuggingFaceH4/zephyr-7b-beta's template): role tags, EOS after every turn,
# newlines that trim_blocks removes.
ZEPHYR = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

transformers = pytest.importorskip("transformers")


def dialogs(rng: random.Random, n: int, forbidden: tuple[str, ...], system: float = 0.5) -> list[list[dict]]:
    """n random dialogs: an optional system message, 1-3 exchanges, ending with a question or an answer."""
    def text() -> str:
        t = random_text(rng)
        while any(f in t for f in forbidden):
            t = random_text(rng)
        return t

    out = []
    for _ in range(n):
        d = [{"role": "system", "content": text()}] if rng.random() < system else []
        for _ in range(rng.randint(1, 3)):
            d += [{"role": "user", "content": text()}, {"role": "assistant", "content": text()}]
        out.append(d[:-1] if rng.random() < 0.5 else d)
    return out


def bpe_family(folder: Path, special: tuple[str, ...], template: str, gpt2: bool = True, **config) -> Path:
    """A tiny byte-level BPE (trained with `tokenizers`) whose tokenizer_config.json carries `template`."""
    train_llama3_tokenizer(folder, vocab_size=500, gpt2=gpt2, special=special)
    write_tokenizer_config(folder, chat_template=template, **config)
    return folder


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """name -> folder of a tokenizer with its template (each loads in transformers and in minillama)."""
    root = tmp_path_factory.mktemp("families")
    smollm2 = (SMOLLM2 / "chat_template.jinja").read_text() if SMOLLM2.is_dir() else None
    chatml = dict(bos="<|im_start|>", eos="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>")
    out = {
        "qwen2.5": bpe_family(root / "qwen", CHATML_SPECIAL, (FIXTURES / "qwen2.5.jinja").read_text(), **chatml),
        "llama3": bpe_family(root / "llama3", None, (FIXTURES / "llama3.jinja").read_text(), gpt2=False),
        "zephyr": bpe_family(root / "zephyr", ("<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"), ZEPHYR,
                             bos="<s>", eos="</s>"),
    }
    if smollm2 is not None:
        out["chatml"] = bpe_family(root / "chatml", CHATML_SPECIAL, smollm2, **chatml)
        out["smollm2"] = SMOLLM2
    return out


FAMILIES = ["chatml", "smollm2", "qwen2.5", "llama3", "zephyr"]


def pair(families, name):
    if name not in families:
        pytest.skip(f"{SMOLLM2} (SmolLM2-135M-Instruct's tokenizer) is absent")
    folder = families[name]
    return load_tokenizer(folder), transformers.AutoTokenizer.from_pretrained(str(folder))


@pytest.mark.parametrize("name", FAMILIES)
def test_encode_chat_equals_apply_chat_template(families, name):
    """System, single- and multi-turn dialogs: the text and the ids of apply_chat_template(tokenize=True)."""
    ours, hf = pair(families, name)
    for dialog in dialogs(random.Random(FAMILIES.index(name)), 60, forbidden=tuple(ours.control_texts())):
        generation = dialog[-1]["role"] == "user"
        text = hf.apply_chat_template(dialog, add_generation_prompt=generation, tokenize=False)
        assert ours.chat_template.render(dialog, generation) == text, dialog
        ref = hf.apply_chat_template(dialog, add_generation_prompt=generation, return_dict=False)
        assert ours.encode_chat(dialog) == chat_template_ids(ours, dialog) == ref, dialog
        assert chat_ids(dialog, ours, "model") == ref


@pytest.mark.parametrize("name", FAMILIES)
def test_answer_span_is_what_the_answer_adds_up_to_the_end_of_turn(families, name):
    """The prompt = apply_chat_template(prompt, add_generation_prompt=True); prompt + span is a prefix of the
    whole conversation's ids and ends at its first end-of-turn token (ChatML: `<|im_end|>`, the "\\n" after
    it excluded)."""
    ours, hf = pair(families, name)
    for dialog in dialogs(random.Random(7), 40, forbidden=tuple(ours.control_texts())):
        dialog = dialog if dialog[-1]["role"] == "user" else dialog[:-1]
        answer = random_text(random.Random(len(dialog))).strip() or "fine"
        prompt, span = answer_span(ours, dialog, answer)
        assert prompt == hf.apply_chat_template(dialog, add_generation_prompt=True, return_dict=False)
        whole = hf.apply_chat_template(dialog + [{"role": "assistant", "content": answer}], return_dict=False)
        assert whole[:len(prompt) + len(span)] == prompt + span
        assert span[-1] in ours.eos_ids and not any(i in ours.eos_ids for i in span[:-1])
        assert answer in ours.decode(span)
    if name in ("chatml", "smollm2", "qwen2.5"):
        im_end = ours.special_ids["<|im_end|>"]
        _, span = answer_span(ours, [{"role": "user", "content": "Q"}], "A")
        assert span == ours.encode("A", bos=False) + [im_end]  # "\n" after <|im_end|> is not the answer's


def test_training_example_of_the_model_template(families):
    """prompt_ids + response_ids + answer_end_id (data.tokenize_record's path) = the whole rendered exchange up
    to its end-of-turn token; the instruction is the system message, the input the user message."""
    ours, hf = pair(families, "chatml")
    record = {"instruction": "You are a doctor.", "input": "I have a cough.", "output": " Rest and fluids. "}
    ids = prompt_ids(record, ours, "model") + response_ids(record, ours, "model") + [answer_end_id(ours, "model")]
    whole = hf.apply_chat_template([{"role": "system", "content": "You are a doctor."},
                                    {"role": "user", "content": "I have a cough."},
                                    {"role": "assistant", "content": "Rest and fluids."}], return_dict=False)
    assert ids == whole[:-1] and whole[-1] == ours.encode("\n", bos=False)[0]
    assert answer_end_id(ours, "model") == ours.special_ids["<|im_end|>"] == ours.eos_id
    from lora.finetune.data import IGNORE_INDEX, tokenize_record

    ex = tokenize_record(record, ours, "model", 400)
    n_prompt = len(prompt_ids(record, ours, "model"))
    assert ex["input_ids"] == ids and ex["labels"] == [IGNORE_INDEX] * n_prompt + ids[n_prompt:]


def test_smollm2_encode_equals_autotokenizer_on_genmedgpt(genmedgpt_path):
    """`encode(text)` = `AutoTokenizer(...)(text)["input_ids"]` on SmolLM2 (no BOS: its tokenizer adds none;
    21 byte symbols missing from its vocabulary), on every GenMedGPT-5k text and on control bytes."""
    if not SMOLLM2.is_dir():
        pytest.skip(f"{SMOLLM2} is absent")
    ours, hf = load_tokenizer(SMOLLM2), transformers.AutoTokenizer.from_pretrained(str(SMOLLM2))
    records = json.loads(genmedgpt_path.read_text())
    texts = [r[k] for r in records for k in ("instruction", "input", "output")]
    rng = random.Random(0)
    texts += ["Hello\x04world", "\x04", "!\x04!", "\U00040000a", "\ufeff\u200b", "  \n\t\n  x", "😀👍🏽 done"]
    pieces = ["a", " ", "\x06", "\x13", "é", "\n", "日本"]
    texts += ["".join(rng.choice(pieces) for _ in range(20)) for _ in range(300)]
    assert ours.encode_batch(texts) == hf(texts)["input_ids"]
    assert ours.encode("Hello\x04world") == [19556, 6693] and ours.prefix_ids == ()


def test_llama3_and_llama2_keep_their_bos(families, llama2_tokenizer_path):
    """Llama-3 (post_processor) and Llama-2 (LlamaTokenizer's add_bos_token) put BOS first, as transformers."""
    from _minillama_util import hf_llama_tokenizer

    ours, hf = pair(families, "llama3")
    texts = [t for t in (random_text(random.Random(i)) for i in range(150)) if "<|" not in t and "</s>" not in t]
    assert ours.encode_batch(texts) == hf(texts)["input_ids"] and ours.encode("x")[0] == ours.bos_id
    sp, hf2 = Tokenizer(llama2_tokenizer_path), hf_llama_tokenizer(llama2_tokenizer_path)
    hf2.add_bos_token = True  # Llama-2's tokenizer_config.json: "add_bos_token": true
    texts = [t for t in texts if t == t.lstrip()]  # (leading spaces: legacy=False differs from SentencePiece)
    assert sp.encode_batch(texts) == hf2(texts)["input_ids"] and sp.encode("x")[0] == sp.bos_id == 1


def test_from_spec_equals_the_files(families):
    """`BPETokenizer.from_spec` (what a GGUF file gives) builds the tokenizer the folder gives; add_bos_token in
    the config decides there (transformers passes it explicitly when it reads a GGUF file)."""
    folder = families["chatml"] if "chatml" in families else families["qwen2.5"]
    spec = json.loads((folder / "tokenizer.json").read_text())
    config = json.loads((folder / "tokenizer_config.json").read_text())
    ours, built = load_tokenizer(folder), BPETokenizer.from_spec(spec, config, "model.gguf")
    text = "Hello there,\n  the patient's fever 😀"
    assert built.encode(text) == ours.encode(text) and built.eos_ids == ours.eos_ids
    dialog = [{"role": "user", "content": "hi"}]
    assert built.encode_chat(dialog) == ours.encode_chat(dialog) and built.chat_template.source == "model.gguf"
    with_bos = BPETokenizer.from_spec(spec, {**config, "add_bos_token": True}, "model.gguf")
    assert with_bos.encode(text) == [built.bos_id] + built.encode(text)
    with pytest.raises(MiniLlamaError, match=r"^model.gguf: eos_token '<nope>' is not a token"):
        BPETokenizer.from_spec(spec, {**config, "eos_token": "<nope>"}, "model.gguf")


def test_chat_template_sources(tmp_path):
    """chat_template.jinja beside the config wins; a list of named templates gives "default"."""
    assert find_chat_template({"chat_template": "A"}, "cfg") == "A"
    assert find_chat_template({"chat_template": [{"name": "tool_use", "template": "T"},
                                                 {"name": "default", "template": "D"}]}, "cfg") == "D"
    with pytest.raises(MiniLlamaError, match="names no template 'default'"):
        find_chat_template({"chat_template": [{"name": "tool_use", "template": "T"}]}, "cfg")
    (tmp_path / "chat_template.jinja").write_text("J")
    assert find_chat_template({"chat_template": "A"}, "cfg", tmp_path) == "J"
    assert find_chat_template({}, "cfg") is None


# ---- the hand-written formats equal the Jinja rendering of the models' real templates ----

def _sp_folder(tmp_path: Path, model_file: Path, template: str, legacy: bool) -> Tokenizer:
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_file, tmp_path / "tokenizer.model")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template, "legacy": legacy}))
    return Tokenizer(tmp_path / "tokenizer.model")


def test_llama2_chat_equals_its_real_template(tmp_path, llama2_tokenizer_path):
    """Llama-2-7b-chat-hf's template, rendered and encoded as its Hub tokenizer does (legacy: a dummy prefix
    after every <s>), equals Meta's `chat_completion` format (`llama2_chat_ids`); the text equals
    transformers' rendering."""
    from transformers.utils.chat_template_utils import render_jinja_template

    template = (FIXTURES / "llama2.jinja").read_text()
    tok = _sp_folder(tmp_path, llama2_tokenizer_path, template, legacy=True)
    for dialog in dialogs(random.Random(2), 150, forbidden=("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<s>",
                                                              "</s>", "<unk>")):
        ref_text = render_jinja_template([dialog], chat_template=template, bos_token="<s>", eos_token="</s>",
                                         unk_token="<unk>")[0][0]
        assert tok.chat_template.render(dialog, dialog[-1]["role"] == "user") == ref_text
        assert tok.encode_chat(dialog) == tok.llama2_chat_ids(dialog) == chat_ids(dialog, tok, "llama2-chat")


@pytest.mark.parametrize("which", ["trained", "llama2"])
def test_mistral_equals_its_real_template(request, tmp_path, which):
    """Mixtral / Mistral-7B-Instruct-v0.1-v0.2's template (non-legacy: no dummy prefix after <s>) equals
    `mistral_chat_ids` and transformers' LlamaTokenizer(legacy=False) apply_chat_template."""
    from test_minillama_chat_formats import _sentencepiece_pair

    model_file = (request.getfixturevalue("trained_sentencepiece") if which == "trained"
                  else request.getfixturevalue("llama2_tokenizer_path"))
    template = (FIXTURES / "mistral.jinja").read_text()
    tok = _sp_folder(tmp_path, model_file, template, legacy=False)
    _, hf = _sentencepiece_pair(model_file)
    for dialog in dialogs(random.Random(4), 150, forbidden=MISTRAL_MARKERS + ("<unk>",)):
        ref = hf.apply_chat_template(dialog, chat_template=template, return_dict=False)
        assert tok.encode_chat(dialog) == mistral_chat_ids(tok, dialog) == ref, dialog


def test_llama3_format_equals_its_real_template(families):
    ours, hf = pair(families, "llama3")
    for dialog in dialogs(random.Random(6), 100, forbidden=("<|",)):
        assert llama3_chat_ids(ours, dialog) == ours.encode_chat(dialog) == chat_ids(dialog, ours, "llama3")


from test_minillama_chat_formats import trained_sentencepiece  # noqa: E402,F401  (a module fixture reused)


@pytest.mark.parametrize("template, words", [
    ("mistral", "is not a SentencePiece tokenizer.model with <s> and </s>"),
    ("llama3", "no special token <|start_header_id|>"),
    ("llama2-chat", "is a byte-level BPE tokenizer.json; llama2-chat needs a SentencePiece tokenizer.model"),
])
def test_a_format_that_does_not_fit_the_tokenizer_is_one_line(families, template, words):
    ours, _ = pair(families, "qwen2.5")  # a ChatML tokenizer
    with pytest.raises(MiniLlamaError) as exc:
        prompt_ids({"instruction": "S", "input": "Q"}, ours, template)
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_mistral_refuses_a_llama3_tokenizer(families):
    ours, _ = pair(families, "llama3")
    with pytest.raises(MiniLlamaError, match="is not a SentencePiece tokenizer.model"):
        chat_ids([{"role": "user", "content": "Q"}], ours, "mistral")


# ---- bad templates: one line each ----

def _render(text: str, messages=None, generation=True) -> str:
    return ChatTemplate(text, "cfg.json", {"bos_token": "<s>", "eos_token": "</s>"}).render(
        messages or [{"role": "user", "content": "hi"}], generation)


@pytest.mark.parametrize("template, words", [
    ("{{ raise_exception('roles must alternate') }}", "cfg.json: chat_template raised an error: roles must alternate"),
    ("{% if false %}x{% endif %}", "cfg.json: chat_template renders nothing"),
    ("{{ nothing.here }}", "cfg.json: chat_template uses an undefined value ('nothing' is undefined)"),
    ("{{ messages[0]['role'] + 1 }}", "cfg.json: chat_template failed (TypeError"),
    ("{% for m in messages %}{{ m.content }}", "cfg.json: chat_template line 1: Unexpected end of template"),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "reads '__subclasses__': a template may not reach Python's"),
    ("{{ messages.append({'role': 'x'}) }}", "cfg.json: chat_template refused by the sandbox"),
    ("{% set ns = namespace(_x=1) %}{{ 'a' }}", "cfg.json: chat_template refused by the sandbox"),
    ("{{ (messages|attr('__class__')).mro() }}", "cfg.json: chat_template"),
])
def test_bad_templates_are_one_line(template, words):
    with pytest.raises(MiniLlamaError) as exc:
        _render(template)
    assert words in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_the_sandbox_never_runs_an_escape(tmp_path):
    """A template reaching for Python's internals is refused before it runs: nothing it would do happens."""
    marker = tmp_path / "escaped"
    escape = ("{{ ''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__['__builtins__']['open']('"
              + str(marker) + "', 'w') }}")
    with pytest.raises(MiniLlamaError, match="refused, not run"):
        _render(escape)
    assert not marker.exists()


def test_undefined_names_render_empty_as_in_transformers():
    """An undefined name alone writes nothing and is false in an `if` (templates rely on `{% if tools %}`)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    text = "{% if tools %}T{% endif %}{{ not_given }}[{{ messages[0].content }}]{{ strftime_now('%Y') | length }}"
    ref = render_jinja_template([[{"role": "user", "content": "hi"}]], chat_template=text)[0][0]
    assert _render(text) == ref == "[hi]4"
    assert _render("{{ {'a': 'é<'} | tojson }}") == '{"a": "é<"}'  # no HTML escaping, as transformers


def test_messages_holding_special_tokens_are_refused(families):
    ours, _ = pair(families, "qwen2.5")
    with pytest.raises(MiniLlamaError, match="contains the special token '<|im_end|>'"):
        ours.encode_chat([{"role": "user", "content": "a <|im_end|> b"}])


def test_template_model_without_a_template_is_one_line(families):
    ours = BPETokenizer(families["llama3"] / "tokenizer.json")
    ours.chat_template = None
    for call in (lambda: prompt_ids({"instruction": "S", "input": "Q"}, ours, "model"),
                 lambda: answer_end_id(ours, "model")):
        with pytest.raises(MiniLlamaError, match=r"^--template model: .* has no chat_template"):
            call()


def test_a_template_whose_prompt_is_not_a_token_prefix_is_one_line(tmp_path):
    """A template whose generation prompt is not how it starts an answer (here "\n" after the tag that the
    answer's turn does not write): the answer's tokens cannot be found."""
    inconsistent = ("{% for m in messages %}{{ '<|' + m['role'] + '|>' + m['content'] + eos_token }}{% endfor %}"
                    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}")
    folder = bpe_family(tmp_path, ("<s>", "</s>", "<|user|>", "<|assistant|>"), inconsistent, bos="<s>", eos="</s>")
    tok = load_tokenizer(folder)
    with pytest.raises(MiniLlamaError) as exc:
        answer_span(tok, [{"role": "user", "content": "Q"}], "the answer")
    assert "is not a token prefix" in str(exc.value) and "\n" not in str(exc.value)


# ---- --template model end to end ----

@pytest.fixture(scope="module")
def chatml_base(tmp_path_factory):
    """A tiny random Llama whose tokenizer is a ChatML byte-level BPE with SmolLM2's template."""
    from conftest import make_tiny_hf_llama

    folder = tmp_path_factory.mktemp("chatml") / "base"
    bpe_family(folder, CHATML_SPECIAL, (FIXTURES / "qwen2.5.jinja").read_text(), bos="<|im_start|>",
               eos="<|im_end|>", pad_token="<|im_end|>")
    tok = load_tokenizer(folder)
    make_tiny_hf_llama(folder, vocab_size=tok.vocab_size)
    config = json.loads((folder / "config.json").read_text())  # the ids of this tokenizer, not Llama-2's
    config.update(bos_token_id=None, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_train_with_the_model_template(chatml_base, tmp_path):
    """scripts/train.py --template model: trains, the run records the template, and generate answers with it."""
    import subprocess
    import sys

    from lora.finetune import demo_data
    from medlora_scripts import train

    data = demo_data.write_demo_dataset(tmp_path / "data.json", 12, seed=4)
    out = tmp_path / "run"
    args = ["--preset", "none", "--base", str(chatml_base), "--data", str(data), "--out", str(out), "--template",
            "model", "--val-size", "4", "--batch-size", "4", "--micro-batch-size", "2", "--max-steps", "2",
            "--warmup-steps", "1", "--lr", "1e-2", "--eval-steps", "2", "--save-steps", "2", "--cutoff-len", "200",
            "--num-threads", "1"]
    assert train.main(args) == 0
    assert json.loads((out / "config.json").read_text())["template"] == "model"
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "minillama", "generate", "--model", str(out), "--prompt", "I cough",
                           "--max-new-tokens", "3"], capture_output=True, text=True, cwd=repo, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "template model" in done.stderr
    # the base alone: its own template by default, said in one line
    done = subprocess.run([sys.executable, "-m", "minillama", "generate", "--model", str(chatml_base), "--prompt",
                           "I cough", "--max-new-tokens", "2"], capture_output=True, text=True, cwd=repo,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "template model (default: the model's own chat_template" in done.stderr


def test_train_with_the_model_template_on_a_base_without_one_writes_nothing(tmp_path, chatml_base):
    from lora.finetune import demo_data
    from medlora_scripts import train

    base = tmp_path / "base"
    shutil.copytree(chatml_base, base)
    config = json.loads((base / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    data = demo_data.write_demo_dataset(tmp_path / "data.json", 12, seed=4)
    out = tmp_path / "run"
    args = ["--preset", "none", "--base", str(base), "--data", str(data), "--out", str(out), "--template", "model",
            "--val-size", "4", "--batch-size", "4", "--micro-batch-size", "2", "--max-steps", "1", "--num-threads", "1"]
    assert train.main(args) == 2
    assert not out.exists()


def test_model_is_a_template_choice_everywhere():
    from lora.finetune.config import TrainConfig

    assert "model" in TEMPLATES
    assert "model" in TrainConfig.__dataclass_fields__["template"].metadata["choices"]


@pytest.mark.parametrize("tokenizer_json, config, legacy", [
    (None, {}, True), (None, {"legacy": False}, False),
    ({"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                         {"type": "Replace"}]}, "pre_tokenizer": None},
     {"legacy": False}, True),  # Llama-2's Hub tokenizer.json: a dummy prefix on every text between specials
    ({"normalizer": None, "pre_tokenizer": {"type": "Metaspace", "prepend_scheme": "first"}}, {}, False),
])
def test_sentencepiece_dummy_prefix_follows_the_tokenizer_json_beside_it(tmp_path, llama2_tokenizer_path,
                                                                         tokenizer_json, config, legacy):
    """What transformers loads decides how a rendered template is encoded: the tokenizer.json a Hub repo ships
    beside tokenizer.model, else tokenizer_config.json's `legacy`."""
    if tokenizer_json is not None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    tok = _sp_folder(tmp_path, llama2_tokenizer_path, "{{ bos_token + '[INST] hi' }}", legacy=True)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ bos_token + '[INST] hi' }}",
                                                                **config}))
    tok = Tokenizer(tmp_path / "tokenizer.model")
    assert tok.legacy is legacy
    ids = tok.encode_chat([{"role": "user", "content": "x"}])
    prefixed = tok.sp.encode("[INST] hi")  # "▁[" "INST" "]" "▁hi"
    assert ids == [1] + (prefixed if legacy else [tok.sp.piece_to_id("[")] + prefixed[1:])


def test_sentencepiece_bpe_without_the_dummy_prefix_equals_sentencepiece(llama2_tokenizer_path, genmedgpt_path):
    """`_bpe_word` (SentencePiece's BPE, used where no dummy prefix is added) = `sp.encode` when given the
    prefix itself, on every GenMedGPT-5k text and on texts full of unicode, digits and whitespace runs."""
    from minillama.tokenizer import _words

    tok = Tokenizer(llama2_tokenizer_path)
    texts = [r[k] for r in json.loads(genmedgpt_path.read_text())[:1500] for k in ("input", "output")]
    texts += [random_text(random.Random(i)) for i in range(1500)]
    for text in filter(None, texts):  # (an empty text has no dummy prefix)
        ours = [i for w in _words("\u2581" + text.replace(" ", "\u2581")) for i in tok._bpe_word(w)]
        assert ours == tok.sp.encode(text), repr(text)
