"""ROUGE-1/2/L: hand-computed vectors for each formula and parity with rouge-score on GenMedGPT pairs."""
from __future__ import annotations

import importlib
import random

import pytest

from _evalkit_util import perturbed_pairs
from evalkit.rouge import f1, f_beta, lcs_length, lcs_length_bits, rouge, rouge_scores, rouge_tokenize

ROUGE = importlib.import_module("evalkit.rouge")  # the module (evalkit.rouge is also a function)


def test_tokenizer_lowercases_splits_and_stems_long_words_only():
    assert rouge_tokenize("The Patient's BP: 120/80!") == ["the", "patient", "s", "bp", "120", "80"]
    assert rouge_tokenize("  --  ") == []
    assert rouge_tokenize("Café naïve") == ["caf", "na", "ve"]  # non [a-z0-9] characters split words
    # 'was' -> 'wa' by Porter, but words of 3 characters or fewer are not stemmed
    assert rouge_tokenize("Coughing was running fast cats", stem=True) == ["cough", "was", "run", "fast", "cat"]


def test_lcs_hand_vectors():
    assert lcs_length("a b c d e".split(), "a c e".split()) == 3
    assert lcs_length("a b c".split(), "c b a".split()) == 1
    assert lcs_length([], "a".split()) == 0
    assert lcs_length_bits("a b c d e".split(), "a c e".split()) == 3


def test_bit_parallel_lcs_equals_the_dynamic_programme(monkeypatch):
    """`lcs_length_bits` is a drop-in for the textbook DP on every kind of input, both argument orders."""
    monkeypatch.setattr(ROUGE, "DP_CELLS", float("inf"))  # lcs_length always runs the DP table
    rng = random.Random(0)
    cases = [([], []), ([], ["a"]), (["a"], []), (["a"], ["a"]), (["a"] * 70, ["a"] * 65), (["a", "b"] * 40, ["b"] * 90)]
    for _ in range(600):
        alphabet = "abcdefghij"[:rng.randint(1, 10)]  # 1 letter: all repeated; 10: few matches
        cases.append(([rng.choice(alphabet) for _ in range(rng.randint(0, 80))],
                      [rng.choice(alphabet) for _ in range(rng.randint(0, 80))]))
    for n, m in [(300, 200), (5000, 3), (3, 4200), (4097, 40)]:  # past 64 bits and past LONG_SIDE
        cases.append(([rng.choice("abcde") for _ in range(n)], [rng.choice("abcdef") for _ in range(m)]))
    for a, b in cases:
        assert lcs_length_bits(a, b) == lcs_length_bits(b, a) == lcs_length(a, b) == lcs_length(b, a), (a, b)
    assert lcs_length_bits(*cases[-1], long_side=10) == lcs_length(*cases[-1])  # the other side as vector


def test_unigram_bigram_and_lcs_by_hand():
    # hyp unigrams: the x2, cat, sat, on, mat; ref: the x2, cat, is, on, mat -> overlap 5 of 6 each
    # bigrams: the-cat, on-the, the-mat shared -> 3 of 5; LCS 'the cat on the mat' = 5 of 6
    s = rouge_scores("The cat sat on the mat.", "the cat is on the mat")
    assert s["rouge1"] == pytest.approx((5 / 6, 5 / 6, 5 / 6), abs=1e-15)
    assert s["rouge2"] == pytest.approx((3 / 5, 3 / 5, 3 / 5), abs=1e-15)
    assert s["rougeL"] == pytest.approx((5 / 6, 5 / 6, 5 / 6), abs=1e-15)


def test_counts_are_clipped():
    s = rouge_scores("the the the", "the cat")  # min(3, 1) = 1 shared unigram
    assert s["rouge1"] == pytest.approx((1 / 3, 1 / 2, 2 * (1 / 6) / (5 / 6)), abs=1e-15)
    assert s["rouge2"].fmeasure == 0.0


def test_f_beta_weighs_recall_for_rouge_l_only():
    # hyp a b c d (4), ref a e b f g h i j (8): LCS 'a b' = 2 -> P = 1/2, R = 1/4
    hyp, ref = "a b c d", "a e b f g h i j"
    expected = (1 + 1.2**2) * 0.5 * 0.25 / (0.25 + 1.2**2 * 0.5)   # Eq. 7 with beta = 1.2
    scores = rouge(hyp, ref, beta=1.2)
    assert scores["rougeL"] == pytest.approx(expected, abs=1e-15)
    assert scores["rouge1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75, abs=1e-15)  # Eq. 5 stays F1
    assert rouge(hyp, ref)["rougeL"] == pytest.approx(1 / 3, abs=1e-15)
    assert f_beta(0.5, 0.25, 1.0) == f1(0.5, 0.25)
    assert f_beta(0.0, 0.0, 1.2) == 0.0 and f1(0.0, 0.0) == 0.0
    assert f_beta(0.5, 0.25, 3.0) < f_beta(0.5, 0.25, 1.2) < f1(0.5, 0.25)  # the lower recall weighs more


def test_empty_identical_and_stemmed_inputs():
    zero = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert rouge("", "a reference") == zero
    assert rouge("a response", "") == zero
    assert rouge("", "") == zero
    assert rouge("!!!", "???") == zero
    assert rouge("Take two tablets daily.", "take two tablets daily") == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert rouge("infections", "infected")["rouge1"] == 0.0
    assert rouge("infections", "infected", stem=True)["rouge1"] == 1.0  # both stem to 'infect'


def test_unknown_rouge_type_is_a_key_error():
    with pytest.raises(KeyError, match="rougeW"):
        rouge_scores("x", "x", rouge_types=("rougeW",))


def genmedgpt_pairs(n_pairs: int, seed: int = 0) -> list[tuple[str, str]]:
    """Outputs against edited copies (an insertion from another output among the edits) and other outputs."""
    def insert(words, k, j, outputs, rng):
        words.insert(k, rng.choice(outputs[j].split()))
    return perturbed_pairs(n_pairs, insert, seed)


@pytest.mark.slow
@pytest.mark.parametrize("stem", [False, True])
def test_parity_with_rouge_score(stem):
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=stem)
    pairs = genmedgpt_pairs(2000) + [("", "x"), ("x", ""), ("", ""), ("same", "same")]
    worst = 0.0
    for hyp, ref in pairs:
        expected = scorer.score(ref, hyp)  # rouge_score takes (target, prediction)
        ours = rouge_scores(hyp, ref, stem=stem)
        for key in ("rouge1", "rouge2", "rougeL"):
            worst = max(worst, *(abs(a - b) for a, b in zip(expected[key], ours[key])))
        p, r = expected["rougeL"].precision, expected["rougeL"].recall
        beta_f = 2.44 * p * r / (r + 1.44 * p) if p + r else 0.0  # Eq. 7, beta = 1.2, from rouge_score's P and R
        worst = max(worst, abs(rouge(hyp, ref, beta=1.2, stem=stem)["rougeL"] - beta_f))
    assert worst <= 1e-9
