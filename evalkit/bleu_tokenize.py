"""BLEU tokenisers: sacrebleu's ``13a`` (mteval-v13a.pl, as WMT uses it) and plain whitespace.

Both return the list of tokens. ``tokenize_13a`` reproduces ``sacrebleu.tokenizers.tokenizer_13a``
(sacrebleu 2.x) step by step, including the ``rstrip`` sacrebleu applies before tokenising.
"""
from __future__ import annotations

import re
from functools import lru_cache

# mteval-v13a.pl's "language-dependent part", in sacrebleu's order (tokenizer_re.py). The first rule,
# r"([\{-\~\[-\` -\&\(-\+\:-\@\/])" -> r" \1 ", puts spaces around single characters, so it is done with
# str.translate (same result, ~10x faster than re.sub with a group template).
_SPACED = "{|}~" + "[\\]^_`" + " !\"#$%&" + "()*+" + ":;<=>?@" + "/"
_RULE1 = str.maketrans({c: f" {c} " for c in _SPACED})
_RULES = (
    # Period and comma are split off unless preceded by a digit ...
    (re.compile(r"([^0-9])([\.,])"), lambda m: f"{m[1]} {m[2]} "),
    # ... or unless followed by a digit (so "3.5" and "1,000" survive).
    (re.compile(r"([\.,])([^0-9])"), lambda m: f" {m[1]} {m[2]}"),
    # A dash after a digit is split off ("5-year" -> "5 - year").
    (re.compile(r"([0-9])(-)"), lambda m: f"{m[1]} {m[2]} "),
)


@lru_cache(maxsize=2**16)
def _tokenize_13a_cached(line: str) -> tuple[str, ...]:
    line = line.rstrip()  # sacrebleu's BLEU._preprocess_segment strips trailing whitespace first
    # Language-independent part of mteval-v13a.pl.
    line = line.replace("<skipped>", "")
    line = line.replace("-\n", "")
    line = line.replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"')
        line = line.replace("&amp;", "&")
        line = line.replace("&lt;", "<")
        line = line.replace("&gt;", ">")
    line = f" {line} ".translate(_RULE1)
    if "." in line or "," in line:
        line = _RULES[0][0].sub(_RULES[0][1], line)
        line = _RULES[1][0].sub(_RULES[1][1], line)
    if "-" in line:
        line = _RULES[2][0].sub(_RULES[2][1], line)
    return tuple(line.split())


def tokenize_13a(line: str, lowercase: bool = False) -> tuple[str, ...]:
    """Tokenise like ``sacrebleu``'s default ``13a`` tokeniser (results cached; 65,536 lines)."""
    return _tokenize_13a_cached(line.lower() if lowercase else line)


def tokenize_whitespace(line: str, lowercase: bool = False) -> tuple[str, ...]:
    """Split on runs of whitespace (``str.split()``), as NLTK examples do before ``sentence_bleu``."""
    return tuple((line.lower() if lowercase else line).split())


TOKENIZERS = {"13a": tokenize_13a, "whitespace": tokenize_whitespace}


def get_tokenizer(name: str):
    """The tokeniser function called ``name`` (``"13a"`` or ``"whitespace"``)."""
    return TOKENIZERS[name]
