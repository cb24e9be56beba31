"""BLEU: hand-computed vectors for each part of Eq. 4 and parity with sacrebleu and nltk."""
from __future__ import annotations

import json
import math
import random
import sys
import warnings
from fractions import Fraction

import pytest

from evalkit.bleu import (BLEU, brevity_penalty, clipped_counts, clipped_matches, closest_ref_length, corpus_bleu,
                          ngram_counts, RefNgrams)
from evalkit.bleu import bleu as evalkit_bleu
from evalkit.bleu_tokenize import tokenize_13a, tokenize_whitespace
from evalkit.smoothing import BleuWarning

from conftest import shared_file


def ws(hyp, ref, smooth, **kw):
    """Sentence BLEU on whitespace tokens with the given smoothing (no effective order unless asked)."""
    return BLEU("sacrebleu", tokenize="whitespace", smooth=smooth, **kw).sentence(hyp, ref)


# ---------------------------------------------------------------- formula parts, by hand

def test_clipped_counts_the_the_the():
    hyp, ref = "the the the the the the the".split(), "the cat is on the mat".split()
    assert clipped_counts(ngram_counts(hyp), ngram_counts(ref)) == [2, 0, 0, 0]  # "the" clipped at 2
    stats = BLEU(tokenize="whitespace").stats(" ".join(hyp), " ".join(ref))
    assert stats.total == [7, 6, 5, 4] and (stats.hyp_len, stats.ref_len) == (7, 6)


def test_clipping_uses_the_max_count_over_references():
    stats = BLEU(tokenize="whitespace").stats("a a a b", ["a b", "a a c"])
    assert stats.correct[0] == 3  # a: min(3, max(1, 2)) = 2, b: 1
    assert stats.correct[1] == 2  # "a a" (in ref 2) and "a b" (in ref 1)


def test_brevity_penalty_values():
    assert brevity_penalty(12, 28) == pytest.approx(math.exp(1 - 28 / 12), abs=0, rel=1e-15)
    assert brevity_penalty(12, 28) == pytest.approx(0.2635971381157267, rel=1e-15)  # NLTK's doctest
    assert brevity_penalty(5, 5) == 1.0 and brevity_penalty(6, 5) == 1.0
    assert brevity_penalty(0, 5) == 0.0
    assert brevity_penalty(7, 8) == pytest.approx(math.exp(-1 / 7), rel=1e-15)


def test_closest_reference_length_prefers_shorter_on_ties():
    assert closest_ref_length([13, 11], 12) == 11
    assert closest_ref_length([11, 8], 7) == 8
    assert closest_ref_length([11, 8, 6, 7], 7) == 7


def test_unsmoothed_bleu_by_hand():
    # p = 4/5, 3/4, 2/3, 1/2; c = r = 5 so BP = 1.
    expected = (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert ws("a b c d e", "a b c d f", "none") == pytest.approx(expected, rel=1e-14)
    assert evalkit_bleu("a b c d e", "a b c d f", preset="nltk") == pytest.approx(expected, rel=1e-14)
    assert evalkit_bleu("a b c d e", "a b c d f") == pytest.approx(expected, rel=1e-14)


def test_weights_are_the_w_n_of_eq4():
    p = [4 / 5, 3 / 4]
    expected = math.exp(0.3 * math.log(p[0]) + 0.7 * math.log(p[1]))
    got = BLEU("nltk", weights=(0.3, 0.7)).sentence("a b c d e", "a b c d f")
    assert got == pytest.approx(expected, rel=1e-14)


# "a b x c d" vs "a b c d e": matches 4/5, 2/4, 0/3, 0/2; c = r = 5.
HYP, REF = "a b x c d", "a b c d e"


@pytest.mark.parametrize("smooth,p3,p4", [
    ("exp", 1 / (2 * 3), 1 / (4 * 2)),        # NIST: k-th zero -> 1 / (2^k * total)
    ("floor", 0.1 / 3, 0.1 / 2),              # floor 0.1 / total
    ("method1", 0.1 / 3, 0.1 / 2),            # NLTK epsilon 0.1 / total
    ("method3", 1 / (2 * 3), 1 / (4 * 2)),    # NLTK's NIST
    ("method4", math.log(5) / (2 * 5) / 3, math.log(5) / (4 * 5) / 2),  # ln(len) / (2^k K) / total
])
def test_zero_order_smoothing_by_hand(smooth, p3, p4):
    expected = (4 / 5 * 2 / 4 * p3 * p4) ** 0.25
    bleu = ws(HYP, REF, smooth) if smooth in ("exp", "floor") else BLEU("nltk", smooth=smooth).sentence(HYP, REF)
    assert bleu == pytest.approx(expected, rel=1e-12)


def test_add_k_and_method2_by_hand():
    expected = (4 / 5 * 3 / 5 * 1 / 4 * 1 / 3) ** 0.25  # (m + 1) / (t + 1) for n > 1
    assert ws(HYP, REF, "add-k") == pytest.approx(expected, rel=1e-12)
    assert BLEU("nltk", smooth="method2").sentence(HYP, REF) == pytest.approx(expected, rel=1e-12)


def test_no_smoothing_is_zero_and_method0_is_tiny_with_warning():
    assert ws(HYP, REF, "none") == 0.0
    with pytest.warns(BleuWarning):
        v = evalkit_bleu(HYP, REF, preset="nltk")
    expected = (4 / 5 * 2 / 4) ** 0.25 * sys.float_info.min ** 0.5  # NLTK: zero -> smallest float
    assert v == pytest.approx(expected, rel=1e-12) and 0 < v < 1e-70


def test_method5_by_hand():
    p = [Fraction(4, 5), Fraction(1, 2), Fraction(0), Fraction(0)]
    p5 = Fraction(0, 1)  # the one 5-gram "a b x c d" does not match
    m1 = (p[0] + 1 + p[0] + p[1]) / 3
    m2 = (m1 + p[1] + p[2]) / 3
    m3 = (m2 + p[2] + p[3]) / 3
    m4 = (m3 + p[3] + p5) / 3
    expected = math.exp(sum(0.25 * math.log(v) for v in (m1, m2, m3, m4)))
    assert BLEU("nltk", smooth="method5").sentence(HYP, REF) == pytest.approx(expected, rel=1e-12)


def test_method6_by_hand_and_its_precondition():
    # "a b c x d e" vs "a b c d e f": p = 5/6, 3/5, 1/4, 0/3; alpha = 5.
    p1, p2 = 5 / 6, 3 / 5
    p3 = (1 + 5 * (p2 ** 2 / p1)) / (4 + 5)
    p4 = (0 + 5 * (p3 ** 2 / p2)) / (3 + 5)
    expected = (p1 * p2 * p3 * p4) ** 0.25
    assert BLEU("nltk", smooth="method6").sentence("a b c x d e", "a b c d e f") == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="3-gram"):
        BLEU("nltk", smooth="method6").sentence(HYP, REF)


def test_method7_is_method4_then_method5():
    l5 = math.log(5)
    p = [4 / 5, 1 / 2, l5 / (2 * 5) / 3, l5 / (4 * 5) / 2]
    m1 = (p[0] + 1 + p[0] + p[1]) / 3
    m2 = (m1 + p[1] + p[2]) / 3
    m3 = (m2 + p[2] + p[3]) / 3
    m4 = (m3 + p[3] + 0) / 3
    expected = (m1 * m2 * m3 * m4) ** 0.25
    assert BLEU("nltk", smooth="method7").sentence(HYP, REF) == pytest.approx(expected, rel=1e-12)


def test_effective_order():
    # "a b" vs "a b c": p1 = p2 = 1, no 3-/4-grams; BP = exp(1 - 3/2).
    assert ws("a b", "a b c", "exp", effective_order=True) == pytest.approx(math.exp(-0.5), rel=1e-14)
    assert ws("a b", "a b c", "exp", effective_order=False) == 0.0
    assert evalkit_bleu("a b", "a b c") == pytest.approx(math.exp(-0.5), rel=1e-14)


def test_empty_and_identical_inputs():
    for preset in ("sacrebleu", "nltk"):
        assert evalkit_bleu("", "a b c", preset=preset) == 0.0
        assert evalkit_bleu("a b c", "", preset=preset) == 0.0
        assert evalkit_bleu("", "", preset=preset) == 0.0
        assert evalkit_bleu("the cat sat on the mat", "the cat sat on the mat", preset=preset) == 1.0
    assert evalkit_bleu("a b", "a b") == 1.0  # effective order: only unigrams and bigrams
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BleuWarning)
        assert evalkit_bleu("a b", "a b", preset="nltk") < 1e-70  # NLTK: no 3-grams -> ~0


def test_corpus_bleu_sums_statistics():
    hyps, refs = ["a b c d e", "a b x c d"], ["a b c d f", "a b c d e"]
    # matches (4+4)/(5+5), (3+2)/(4+4), (2+0)/(3+3), (1+0)/(2+2); c = r = 10
    expected = (8 / 10 * 5 / 8 * 2 / 6 * 1 / 4) ** 0.25
    assert corpus_bleu(hyps, refs) == pytest.approx(expected, rel=1e-14)
    assert corpus_bleu(hyps, refs, preset="nltk") == pytest.approx(expected, rel=1e-14)


def test_13a_tokenizer_vectors():
    assert tokenize_13a("Hello, world.") == ("Hello", ",", "world", ".")
    assert tokenize_13a("Take 3.5 mg, 1,000 times") == ("Take", "3.5", "mg", ",", "1,000", "times")
    assert tokenize_13a("a 5-year-old (boy)") == ("a", "5", "-", "year-old", "(", "boy", ")")
    assert tokenize_13a("x &amp; y&lt;z") == ("x", "&", "y", "<", "z")
    assert tokenize_13a("don't stop\n") == ("don't", "stop")
    assert tokenize_whitespace("  a\tb  c ") == ("a", "b", "c")


def test_unknown_names_are_key_errors():
    with pytest.raises(KeyError, match="moses"):
        evalkit_bleu("a", "a", preset="moses")
    with pytest.raises(KeyError, match="method9"):
        evalkit_bleu("a", "a", smooth="method9")


# ---------------------------------------------------------------- parity with the libraries

def perturb(text: str, rng: random.Random, vocab: list[str]) -> str:
    """Drop, duplicate, swap and substitute words, and change case, at random (seeded)."""
    words = text.split()
    out = []
    for w in words:
        r = rng.random()
        if r < 0.08:
            continue
        if r < 0.14:
            out += [w, w]
        elif r < 0.22:
            out.append(rng.choice(vocab))
        elif r < 0.26:
            out.append(w.upper())
        else:
            out.append(w)
    for _ in range(len(out) // 10):
        i = rng.randrange(max(1, len(out) - 1))
        out[i:i + 2] = out[i:i + 2][::-1]
    return " ".join(out)


@pytest.fixture(scope="module")
def pairs():
    data = json.loads(shared_file("genmedgpt-5k.json").read_text(encoding="utf-8"))
    outputs = [r["output"] for r in data]
    rng = random.Random(1234)
    vocab = [w for o in outputs[:300] for w in o.split()]
    chosen = outputs[:1100]
    built = [(perturb(o, rng, vocab), o) for o in chosen]                      # perturbed vs original
    built += [(o, outputs[i + 1]) for i, o in enumerate(chosen)]               # against another output
    built += [(" ".join(o.split()[: rng.randint(0, 6)]), o) for o in chosen[:200]]  # short, incl. empty
    assert len(built) >= 2000
    return built


@pytest.mark.slow
def test_fast_clipping_equals_the_definition(pairs):
    for (hyp, ref), (other, _) in zip(pairs, pairs[1:]):
        h, r, o = tokenize_13a(hyp), tokenize_13a(ref), tokenize_13a(other)
        assert clipped_matches(h, RefNgrams([r])) == clipped_counts(ngram_counts(h), ngram_counts(r))
        merged = [a | b for a, b in zip(ngram_counts(r), ngram_counts(o))]  # Counter |: max count
        assert clipped_matches(h, RefNgrams([r, o])) == clipped_counts(ngram_counts(h), merged)


@pytest.mark.slow
def test_13a_equals_sacrebleu_on_genmedgpt():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    tok = Tokenizer13a()
    data = json.loads(shared_file("genmedgpt-5k.json").read_text(encoding="utf-8"))
    for r in data:
        for text in (r["input"], r["output"]):
            assert " ".join(tokenize_13a(text)) == tok(text.rstrip())


@pytest.mark.slow
def test_13a_equals_sacrebleu_on_punctuation_soup():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
    tok = Tokenizer13a()
    rng = random.Random(7)
    alphabet = "ab19 .,-'\"&;:!?()[]{}<>/\\@#$%^*_=+~`|\n\t" + "\u00e9\u0663"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        text += rng.choice(["", "&amp;", "&quot;x&lt;y&gt;", "<skipped>", "-\n", " "])
        assert " ".join(tokenize_13a(text)) == tok(text.rstrip()), repr(text)


def test_sentence_bleu_equals_sacrebleu(pairs):
    sacrebleu = pytest.importorskip("sacrebleu")
    for hyp, ref in pairs:
        assert evalkit_bleu(hyp, ref) == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref]).score / 100, abs=1e-9)


@pytest.mark.parametrize("smooth", ["exp", *[pytest.param(s, marks=pytest.mark.slow) for s in ("none", "floor", "add-k")]])
@pytest.mark.parametrize("effective_order", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_sacrebleu_smoothing_and_effective_order(pairs, smooth, effective_order):
    from sacrebleu.metrics import BLEU as SacreBLEU
    ref_metric = SacreBLEU(smooth_method=smooth, effective_order=effective_order)
    ours = BLEU("sacrebleu", smooth=smooth, effective_order=effective_order)
    for hyp, ref in pairs[::3]:
        assert ours.sentence(hyp, ref) == pytest.approx(ref_metric.sentence_score(hyp, [ref]).score / 100, abs=1e-9)


@pytest.mark.slow
def test_corpus_bleu_equals_sacrebleu(pairs):
    sacrebleu = pytest.importorskip("sacrebleu")
    for chunk in (pairs[:1100], pairs[1100:2200], pairs[2200:]):
        hyps, refs = [h for h, _ in chunk], [r for _, r in chunk]
        assert corpus_bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score / 100, abs=1e-9)
    streams = [[r for _, r in pairs[:50]], [h for h, _ in pairs[50:100]]]  # sacrebleu: one list per reference
    multi = sacrebleu.corpus_bleu([h for h, _ in pairs[:50]], streams)
    ours = corpus_bleu([h for h, _ in pairs[:50]], [[r, h2] for (_, r), (h2, _) in zip(pairs[:50], pairs[50:100])])
    assert ours == pytest.approx(multi.score / 100, abs=1e-9)


@pytest.mark.parametrize("method", [0, *[pytest.param(m, marks=pytest.mark.slow) for m in range(1, 8)]])
def test_nltk_sentence_bleu_equals_nltk(pairs, method):
    bleu_score = pytest.importorskip("nltk.translate.bleu_score")
    fn = getattr(bleu_score.SmoothingFunction(), f"method{method}")
    ours = BLEU("nltk", smooth=f"method{method}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for hyp, ref in pairs[::2] if method else pairs:
            try:
                expected = bleu_score.sentence_bleu([ref.split()], hyp.split(), smoothing_function=fn)
            except AssertionError:  # method6 without 3-gram matches
                with pytest.raises(ValueError):
                    ours.sentence(hyp, ref)
                continue
            assert ours.sentence(hyp, ref) == pytest.approx(expected, abs=1e-9)
        if method == 0:  # the documented default call
            for hyp, ref in pairs[:300]:
                assert evalkit_bleu(hyp, ref, preset="nltk") == pytest.approx(
                    bleu_score.sentence_bleu([ref.split()], hyp.split()), abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("method", range(8))
def test_nltk_corpus_bleu_equals_nltk(pairs, method):
    bleu_score = pytest.importorskip("nltk.translate.bleu_score")
    fn = getattr(bleu_score.SmoothingFunction(), f"method{method}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for start in range(0, 2000, 400):
            chunk = pairs[start:start + 400]
            expected = bleu_score.corpus_bleu([[r.split()] for _, r in chunk], [h.split() for h, _ in chunk],
                                              smoothing_function=fn)
            got = corpus_bleu([h for h, _ in chunk], [r for _, r in chunk], preset="nltk", smooth=f"method{method}")
            assert got == pytest.approx(expected, abs=1e-9)


def test_lowercase_equals_sacrebleu(pairs):
    from sacrebleu.metrics import BLEU as SacreBLEU
    ref_metric = SacreBLEU(lowercase=True, effective_order=True)
    ours = BLEU("sacrebleu", lowercase=True)
    for hyp, ref in pairs[::5]:
        assert ours.sentence(hyp, ref) == pytest.approx(ref_metric.sentence_score(hyp, [ref]).score / 100, abs=1e-9)


@pytest.mark.parametrize("weights,auto_reweigh", [((0.5, 0.5), False), ((0.2, 0.3, 0.5), False),
                                                  ((0.25, 0.25, 0.25, 0.25), True)])
def test_nltk_weights_and_auto_reweigh_equal_nltk(pairs, weights, auto_reweigh):
    bleu_score = pytest.importorskip("nltk.translate.bleu_score")
    fn = bleu_score.SmoothingFunction().method1
    ours = BLEU("nltk", smooth="method1", weights=weights, auto_reweigh=auto_reweigh)
    for hyp, ref in pairs[::7] + [("a b", "a b c"), ("a", "a")]:
        expected = bleu_score.sentence_bleu([ref.split()], hyp.split(), weights, fn, auto_reweigh)
        assert ours.sentence(hyp, ref) == pytest.approx(expected, abs=1e-9)
