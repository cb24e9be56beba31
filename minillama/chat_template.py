"""A model's own chat template: the Jinja program in its `tokenizer_config.json`, run in a sandbox.

Hugging Face models ship their chat format as a Jinja template (`chat_template` in tokenizer_config.json,
or a `chat_template.jinja` file beside it; a GGUF file keeps it under `tokenizer.chat_template`).
transformers renders it with `apply_chat_template`; this module renders it the same way
(transformers `utils/chat_template_utils.py`, `_cached_compile_jinja_template` and `render_jinja_template`):

- Jinja's `ImmutableSandboxedEnvironment` with `trim_blocks`, `lstrip_blocks` and the `loopcontrols`
  extension; a template is code from the Hub, so it may not reach Python's internals (`''.__class__` ...),
  nor change the messages it is given;
- the globals `raise_exception(message)`, `strftime_now(format)`, `dict`, `namespace` (underscore names
  refused) and the `tojson` filter (no HTML escaping);
- the variables `messages`, `add_generation_prompt`, `tools` and `documents` (None here) and the tokenizer's
  named special tokens (`bos_token`, `eos_token`, `unk_token`, `pad_token` ...: transformers'
  `special_tokens_map`);
- undefined names are Jinja's default `Undefined`, as in transformers: `{{ x }}` writes nothing and
  `{% if x %}` is false (templates rely on it: `{% if tools %}`), but any use of one (`x.y`, `x + 'a'`)
  is an error.

The rendered text is then tokenized with no BOS or EOS added and with the special tokens' text read as
those tokens (`tokenizer(text, add_special_tokens=False)`). Messages that contain a special token's text
are refused, as the hand-written formats refuse their markers: a user cannot forge a turn.

Training on a model's template (`--template model`) needs the answer's tokens. A template carries no
marks for them (no `{% generation %}` blocks), so the answer's span is found as torchtune does: render
the conversation without the answer (with the generation prompt) and with it; the first must be a token
prefix of the second, and the answer is what the second adds, up to and including the first end-of-turn
token (one of the tokenizer's `eos_ids`). What follows that token (ChatML's "\\n" after `<|im_end|>`) is
not part of the answer: generation stops at the end-of-turn token, so the model never writes it.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from .chat_formats import check_dialog
from .errors import MiniLlamaError

# transformers' template variables: the tokenizer's named special tokens (SpecialTokensMixin).
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def find_chat_template(config: dict[str, Any], source: str, folder: Path | None = None) -> str | None:
    """The chat template a model ships, or None.

    A `chat_template.jinja` file in `folder` wins over tokenizer_config.json's `chat_template` (transformers
    `_from_pretrained`: "independent chat template file(s) ... take priority"). The config's value is a
    string, or a list of {"name", "template"} (several named templates): the one named "default".

    Args:
        config: tokenizer_config.json's content (or the dict a GGUF file gives).
        source: where `config` came from, for errors.
        folder: the tokenizer's folder, or None (a GGUF file).
    """
    if folder is not None and (folder / "chat_template.jinja").is_file():
        try:
            return (folder / "chat_template.jinja").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MiniLlamaError(f"{folder / 'chat_template.jinja'}: cannot read ({exc})") from None
    value = config.get("chat_template")
    if value is None or isinstance(value, str):
        return value
    named = value if isinstance(value, dict) else {}
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
    if not isinstance(named.get("default"), str):
        raise MiniLlamaError(f"{source}: chat_template names no template 'default' (it has "
                             f"{sorted(map(str, named)) or 'none'}): cannot tell which one is the model's")
    return named["default"]


def _environment():
    """transformers' sandboxed Jinja environment (`_cached_compile_jinja_template`), built once."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(jinja2.ext.Extension):
        """`{% generation %}...{% endgeneration %}` renders its body (transformers marks assistant text with it)."""
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    class TemplateDict:  # `dict(...)` without the class's attributes
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

        def fromkeys(self, *args, **kwargs):
            return dict.fromkeys(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):  # a namespace refuses underscore names
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name, value):
            TemplateNamespace._check_name(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check_name(name):
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(f"a namespace may not hold the underscore name {name!r}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda f: datetime.now().strftime(f),
                       dict=TemplateDict(), namespace=TemplateNamespace)
    return env


_ENV = None


class ChatTemplate:
    """A chat template's text, compiled in the sandbox on first use.

    Args:
        text: The Jinja source.
        source: Where it came from (a file name), for errors.
        variables: The special tokens' text under transformers' names (`bos_token`, `eos_token` ...).
    """

    def __init__(self, text: str, source: str, variables: dict[str, str]):
        self.text, self.source, self.variables = text, source, dict(variables)
        self._compiled = None

    def _compile(self):
        global _ENV
        import jinja2

        if self._compiled is None:
            _ENV = _ENV or _environment()
            try:
                ast = _ENV.parse(self.text)
            except jinja2.TemplateSyntaxError as exc:
                raise MiniLlamaError(f"{self.source}: chat_template line {exc.lineno}: {exc.message}") from None
            # The sandbox would stop these when run; a template that tries is refused before it runs.
            for node in ast.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
                name = node.attr if isinstance(node, jinja2.nodes.Getattr) else getattr(node.arg, "value", None)
                if isinstance(name, str) and name.startswith("__"):
                    raise MiniLlamaError(f"{self.source}: chat_template line {node.lineno} reads {name!r}: a "
                                         "template may not reach Python's internals (refused, not run)")
            self._compiled = _ENV.from_string(ast)
        return self._compiled

    def render(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool) -> str:
        """The template's text for `messages` (plain {"role", "content"} dicts).

        Raises:
            MiniLlamaError: One line naming the template's source: a syntax error, the template's own
                `raise_exception`, a use of an undefined value, a sandbox refusal, or an empty result.
        """
        import jinja2

        template = self._compile()
        try:
            text = template.render(messages=[dict(m) for m in messages], tools=None, documents=None,
                                   add_generation_prompt=add_generation_prompt, **self.variables)
        except jinja2.exceptions.SecurityError as exc:
            raise MiniLlamaError(f"{self.source}: chat_template refused by the sandbox ({exc})") from None
        except jinja2.exceptions.UndefinedError as exc:
            raise MiniLlamaError(f"{self.source}: chat_template uses an undefined value ({exc})") from None
        except jinja2.exceptions.TemplateError as exc:
            raise MiniLlamaError(f"{self.source}: chat_template raised an error: {exc}") from None
        except Exception as exc:  # the template's own code failed (e.g. 'a' + 1): still one line
            raise MiniLlamaError(f"{self.source}: chat_template failed ({type(exc).__name__}: {exc})") from None
        if not text:
            raise MiniLlamaError(f"{self.source}: chat_template renders nothing for this conversation")
        return text


def template_variables(config: dict[str, Any], names: dict[str, str] | None = None) -> dict[str, str]:
    """The named special tokens' text from tokenizer_config.json (a string or an AddedToken dict), with
    `names` filling those the config does not set (a SentencePiece model's `<s>`, `</s>`, `<unk>`)."""
    out = dict(names or {})
    for key in SPECIAL_TOKEN_KEYS:
        value = config.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            out[key] = value
    return out


def _checked_dialog(tokenizer, messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    dialog = check_dialog(messages, "chat template")
    for m in dialog:
        for marker in tokenizer.control_texts():
            if marker in m["content"]:
                raise MiniLlamaError(f"chat template: a {m['role']} message contains the special token "
                                     f"{marker!r}; special tokens are not allowed in messages")
    return dialog


def require_template(tokenizer) -> ChatTemplate:
    """The tokenizer's template; one line if it has none."""
    template = getattr(tokenizer, "chat_template", None)
    if template is None:
        raise MiniLlamaError(f"--template model: {getattr(tokenizer, 'path', 'the tokenizer')} has no chat_template "
                             "(neither tokenizer_config.json nor chat_template.jinja gives one); choose another "
                             "--template")
    return template


def chat_template_ids(tokenizer, messages: Sequence[dict[str, str]],
                      add_generation_prompt: bool | None = None) -> list[int]:
    """Token ids of a dialog in the tokenizer's own template: `apply_chat_template(messages,
    add_generation_prompt=..., tokenize=True)`.

    Args:
        tokenizer: A `BPETokenizer` or `Tokenizer` with a `chat_template`.
        messages: [system], user, assistant, user, ... dicts.
        add_generation_prompt: None: True when the dialog ends with a user message (the prompt the model
            answers), False when it ends with an answer (a training example).
    """
    template = require_template(tokenizer)
    dialog = _checked_dialog(tokenizer, messages)
    if add_generation_prompt is None:
        add_generation_prompt = dialog[-1]["role"] == "user"
    return tokenizer.encode_rendered(template.render(dialog, add_generation_prompt))


def answer_span(tokenizer, messages: Sequence[dict[str, str]], answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of one exchange in the tokenizer's template, for training on the answer.

    The prompt is `messages` rendered with the generation prompt; the answer is what rendering
    `messages + [assistant answer]` adds after it, up to and including the first end-of-turn token
    (one of `tokenizer.eos_ids`); see the module docstring.

    Raises:
        MiniLlamaError: The prompt is not a token prefix of the whole, or no end-of-turn token follows
            the answer.
    """
    template = require_template(tokenizer)
    dialog = _checked_dialog(tokenizer, list(messages) + [{"role": "assistant", "content": answer}])
    prompt = tokenizer.encode_rendered(template.render(dialog[:-1], True))
    whole = tokenizer.encode_rendered(template.render(dialog, False))
    if whole[:len(prompt)] != prompt:
        raise MiniLlamaError(f"{template.source}: chat_template: the conversation without the answer (with the "
                             "generation prompt) is not a token prefix of the conversation with it, so the "
                             "answer's tokens cannot be told apart; use another --template")
    rest = whole[len(prompt):]
    ends = [k for k, i in enumerate(rest) if i in tokenizer.eos_ids]
    if not ends:
        raise MiniLlamaError(f"{template.source}: chat_template ends the answer with no end-of-turn token (none "
                             f"of the ids {list(tokenizer.eos_ids)} follows it); use another --template")
    return prompt, rest[:ends[0] + 1]
