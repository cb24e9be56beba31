"""Helpers shared by the evalkit parity tests: nltk's WordNet reader on our files, GenMedGPT outputs."""
from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import pytest

from conftest import shared_file
from evalkit.wordnet import export_nltk_layout, find_wordnet


def nltk_wordnet(folder: Path):
    """nltk's WordNetCorpusReader on a copy of the found database (plus `lexnames`) in `folder`."""
    source = find_wordnet()
    if source is None or not source.is_dir():
        pytest.skip("WordNet 3.0 folder not found (install wordnet-base or set WORDNET_DIR)")
    nltk = pytest.importorskip("nltk")
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    export_nltk_layout(folder, source)
    if str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))  # nltk only opens files under its data paths

    class Reader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):  # the OMW mapping needs nltk's own wordnet data: unused here
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Reader(str(folder), None)


def genmedgpt_records() -> list[dict]:
    """The GenMedGPT-5k records from ../shared/data (the test is skipped when the file is absent)."""
    return json.loads(shared_file("genmedgpt-5k.json").read_text(encoding="utf-8"))


def perturbed_pairs(n_pairs: int, replace, seed: int = 0, drop: float = 0.3, swap: float = 0.6,
                    case: float = 0.8) -> list[tuple[str, str]]:
    """(hypothesis, reference) pairs: each GenMedGPT output against a copy with 1-8 random edits, and
    against another output. An edit drops a word (probability `drop`), swaps two (up to `swap`),
    changes a word's case (up to `case`) or else calls `replace(words, k, j, outputs, rng)`."""
    outputs = [r["output"] for r in genmedgpt_records()]
    rng = random.Random(seed)
    pairs = []
    for i in range(n_pairs // 2):
        ref = outputs[i]
        words = ref.split()
        for _ in range(rng.randint(1, 8)):
            k, j = rng.randrange(len(words)), rng.randrange(len(words))
            edit = rng.random()
            if edit < drop and len(words) > 1:
                del words[k]
            elif edit < swap:
                words[k], words[j] = words[j], words[k]
            elif edit < case:
                words[k] = words[k].upper() if k % 2 else words[k].title()
            else:
                replace(words, k, j, outputs, rng)
        pairs.append((" ".join(words), ref))
        pairs.append((outputs[rng.randrange(len(outputs))], ref))
    return pairs
