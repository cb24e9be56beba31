"""The Porter stemmer: Porter's (1980) own examples, NLTK's extensions, and parity with nltk's stemmer."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from evalkit.porter import MODES, PorterStemmer, stem

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Examples printed with each rule in Porter (1980), run through the whole algorithm (all modes agree).
PAPER_EXAMPLES = {
    "caresses": "caress", "ponies": "poni", "caress": "caress", "cats": "cat",           # step 1a
    "feed": "feed", "agreed": "agre", "plastered": "plaster", "bled": "bled",            # step 1b
    "motoring": "motor", "sing": "sing", "conflated": "conflat", "troubled": "troubl",
    "sized": "size", "hopping": "hop", "tanned": "tan", "falling": "fall", "hissing": "hiss",
    "fizzed": "fizz", "failing": "fail", "filing": "file",
    "happy": "happi",                                                                     # step 1c
    "relational": "relat", "conditional": "condit", "rational": "ration",                # step 2
    "hopeful": "hope", "goodness": "good",                                                # step 3
    "revival": "reviv", "allowance": "allow", "inference": "infer", "airliner": "airlin",
    "adjustment": "adjust", "adoption": "adopt", "effective": "effect",                  # step 4
    "probate": "probat", "rate": "rate", "cease": "ceas",                                 # step 5a
    "controlling": "control", "roll": "roll",                                             # step 5b
    "Symptoms": "symptom", "infections": "infect", "medication": "medic",                # lowercased first
}

# Words whose stems differ between the three modes: (NLTK_EXTENSIONS, MARTIN_EXTENSIONS, ORIGINAL_ALGORITHM).
MODE_EXAMPLES = {
    "ties": ("tie", "ti", "ti"),            # NLTK: a 4-letter -ies -> -ie
    "dying": ("die", "dy", "dy"),           # NLTK's irregular forms
    "skies": ("sky", "ski", "ski"),
    "spied": ("spi", "spi", "spi"),
    "died": ("die", "di", "di"),            # NLTK: a 4-letter -ied -> -ie
    "enjoy": ("enjoy", "enjoi", "enjoi"),   # NLTK: y -> i only after a consonant
    "geology": ("geolog", "geologi", "geologi"),  # NLTK: the 'l' of -logi stays with the stem
    "is": ("is", "is", "i"),                # 1-2 letter words are kept, except in the original
    "sensibility": ("sensibl", "sensibl", "sensibl"),
    "radically": ("radic", "radic", "radic"),
}


@pytest.mark.parametrize("word,expected", sorted(PAPER_EXAMPLES.items()))
def test_paper_examples_in_every_mode(word, expected):
    for mode in MODES:
        assert PorterStemmer(mode).stem(word) == expected, mode


@pytest.mark.parametrize("word,expected", sorted(MODE_EXAMPLES.items()))
def test_mode_differences(word, expected):
    got = tuple(PorterStemmer(mode).stem(word) for mode in MODES)
    assert got == expected


def test_default_mode_and_module_function():
    assert PorterStemmer().mode == "NLTK_EXTENSIONS"
    assert stem("dying") == "die"
    with pytest.raises(ValueError, match="mode"):
        PorterStemmer("SNOWBALL")


def test_stems_are_cached():
    stemmer = PorterStemmer()
    stemmer.stem("coughing")
    stemmer.stem("coughing")
    info = stemmer.stem.cache_info()
    assert (info.hits, info.misses) == (1, 1)


def _dataset_words() -> list[str]:
    path = SHARED_DATA / "genmedgpt-5k.json"
    if not path.is_file():
        pytest.skip(f"reference data {path} is absent (see ../shared/data/README.md)")
    words: set[str] = set()
    for record in json.loads(path.read_text(encoding="utf-8")):
        for field in ("instruction", "input", "output"):
            text = record[field]
            words.update(text.split())                                   # METEOR's raw tokens
            words.update(re.split(r"[^a-z0-9]+", text.lower()))          # rouge_score's tokens
    return sorted(words)


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_parity_with_nltk_on_every_dataset_word(mode):
    porter = pytest.importorskip("nltk.stem.porter")
    words = _dataset_words()
    assert len(words) > 10_000
    reference = porter.PorterStemmer(mode)
    ours = PorterStemmer(mode)
    mismatches = [(w, reference.stem(w), ours.stem(w)) for w in words if reference.stem(w) != ours.stem(w)]
    assert mismatches == []
