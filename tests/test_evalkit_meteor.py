"""METEOR: alignment stages, chunks and penalty by hand, and parity with nltk's single_meteor_score."""
from __future__ import annotations

import importlib

import pytest

from _evalkit_util import nltk_wordnet, perturbed_pairs
from evalkit.meteor import SYNONYMS_OFF_NOTE, align, count_chunks, meteor, synonyms_available
from evalkit.wordnet import load_wordnet

meteor_mod = importlib.import_module("evalkit.meteor")  # the module (evalkit.meteor is also the function's name)


@pytest.fixture(scope="module")
def wordnet():
    wn = load_wordnet()
    if wn is None:
        pytest.skip("WordNet 3.0 not found (install wordnet-base or set WORDNET_DIR)")
    return wn


def test_chunks_by_hand():
    assert count_chunks([]) == 1  # nltk's convention; the score is 0 anyway (no matches)
    assert count_chunks([(0, 0), (1, 1), (2, 2)]) == 1
    assert count_chunks([(0, 1), (1, 4), (2, 5), (3, 0), (4, 3), (5, 2)]) == 5
    assert count_chunks([(0, 0), (2, 1)]) == 2  # adjacent in the reference only


def test_exact_stage_takes_the_last_free_reference_word():
    # hyp: the cat sat on the mat / ref: on the mat the cat sat. From the last hypothesis word:
    # mat->2, the->3 (the later 'the'), on->0, sat->5, cat->4, the->1.
    hyp, ref = "the cat sat on the mat".split(), "on the mat the cat sat".split()
    assert align(hyp, ref, wordnet=None) == [(0, 1), (1, 4), (2, 5), (3, 0), (4, 3), (5, 2)]
    # P = R = 1, Fmean = 1, 5 chunks of 6 matches: 1 - 0.5 (5/6)^3
    assert meteor("The cat sat on the mat", "on the mat the cat sat") == pytest.approx(1 - 0.5 * (5 / 6) ** 3, abs=1e-15)


def test_identical_empty_and_unmatched():
    assert meteor("a b c", "A B C") == pytest.approx(1 - 0.5 * (1 / 3) ** 3, abs=1e-15)  # lowercased; 1 chunk
    assert meteor("", "") == 0.0
    assert meteor("word", "") == 0.0
    assert meteor("", "word") == 0.0
    assert meteor("non matching hypothesis", "this is a cat") == 0.0


def test_stem_stage():
    # no exact match; Porter stems 'patient', 'cough' match both words: 1 chunk of 2
    assert meteor("patients coughing", "patient coughs", wordnet=None) == pytest.approx(1 - 0.5 * (1 / 2) ** 3, abs=1e-15)


def test_synonym_stage(wordnet):
    assert "ill" in wordnet.synonyms("sick")
    # exact: child-child; synonym: sick-ill (WordNet adj.) -> 2 matches, 1 chunk
    assert meteor("sick child", "ill child") == pytest.approx(1 - 0.5 * (1 / 2) ** 3, abs=1e-15)
    # without WordNet only 'child' matches: P = R = 1/2, Fmean = 1/2, penalty 0.5 (1/1)^3
    assert meteor("sick child", "ill child", wordnet=None) == pytest.approx(0.25, abs=1e-15)
    # nltk's order: synonyms are looked up for the stems stage 2 leaves, so 'large' (stem 'larg') is missed
    assert "large" in wordnet.synonyms("big")
    assert meteor("big", "large") == 0.0


def test_parameters_and_the_papers_variant():
    # hyp 'a b', ref 'a c d e': 1 match, P = 1/2, R = 1/4
    fmean = 10 * 0.5 * 0.25 / (0.25 + 9 * 0.5)  # Eq. 8 of the paper
    assert meteor("a b", "a c d e", penalty=False) == pytest.approx(fmean, abs=1e-15)
    assert meteor("a b", "a c d e") == pytest.approx(fmean * (1 - 0.5), abs=1e-15)  # 1 chunk of 1 match
    p, r = 0.5, 0.25
    assert meteor("a b", "a c d e", alpha=0.5, beta=2.0, gamma=0.2) == pytest.approx(
        (1 - 0.2 * 1.0 ** 2) * p * r / (0.5 * p + 0.5 * r), abs=1e-15)


def test_synonyms_off_note(monkeypatch):
    assert "WordNet 3.0 not found" in SYNONYMS_OFF_NOTE and "WORDNET_DIR" in SYNONYMS_OFF_NOTE
    monkeypatch.setattr(meteor_mod, "_AUTO_STATE", {})
    monkeypatch.setattr(meteor_mod, "load_wordnet", lambda: None)
    with pytest.warns(UserWarning, match="synonym stage off"):
        assert synonyms_available() is False
    assert meteor("sick child", "ill child") == pytest.approx(0.25, abs=1e-15)


def test_synonyms_available_with_debian_wordnet(wordnet):
    assert synonyms_available() is True


def genmedgpt_pairs(n_pairs: int, wordnet, seed: int = 0) -> list[tuple[str, str]]:
    """Outputs against edited copies (a synonym substitution among the edits) and other outputs."""
    def synonym(words, k, j, outputs, rng):
        names = sorted(n for n in wordnet.synonyms(words[k].lower()) if "_" not in n and n != words[k].lower())
        if names:
            words[k] = rng.choice(names)
    return perturbed_pairs(n_pairs, synonym, seed, drop=0.2, swap=0.4, case=0.55)


@pytest.mark.slow
def test_parity_with_nltk(wordnet, tmp_path):
    meteor_score = pytest.importorskip("nltk.translate.meteor_score")
    reference_wn = nltk_wordnet(tmp_path / "nltk_wordnet")
    pairs = genmedgpt_pairs(2000, wordnet) + [("", "x"), ("x", ""), ("", ""), ("Same words", "same WORDS")]
    worst, synonym_pairs = 0.0, 0
    for hyp, ref in pairs:
        expected = meteor_score.single_meteor_score(ref.split(), hyp.split(), wordnet=reference_wn)
        ours = meteor(hyp, ref)
        worst = max(worst, abs(expected - ours))
        synonym_pairs += ours != meteor(hyp, ref, wordnet=None)
    assert worst <= 1e-9
    assert synonym_pairs > 200  # the synonym stage decided many of these scores
    # nltk's reader passed in place of ours gives the same scores
    assert all(meteor(h, r, wordnet=reference_wn) == meteor(h, r) for h, r in pairs[:200])
    for alpha, beta, gamma in ((0.5, 2.0, 0.2), (0.85, 0.2, 0.6)):
        for hyp, ref in pairs[:100]:
            expected = meteor_score.single_meteor_score(ref.split(), hyp.split(), wordnet=reference_wn,
                                                        alpha=alpha, beta=beta, gamma=gamma)
            assert abs(meteor(hyp, ref, alpha, beta, gamma) - expected) <= 1e-9
