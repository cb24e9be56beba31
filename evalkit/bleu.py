"""BLEU (Papineni et al. 2002), equal to sacrebleu's and NLTK's, on the paper's 0-1 scale.

The definition, in the first functions below (c: hypothesis length, r: closest reference length):

    p_n  = sum_g min(count_hyp(g), max_ref count_ref(g)) / sum_g count_hyp(g)   # Sec. 2.1 (g: the n-grams)
    BP   = 1 if c > r else exp(1 - r / c)                                       # Sec. 2.2.2
    BLEU = BP * exp(sum_n w_n log p_n)                                          # Sec. 2.3 (Eq. 4 of our paper)

Two presets reproduce the libraries people cite:

* ``"sacrebleu"``: ``sacrebleu.sentence_bleu(hyp, [ref]).score / 100`` (13a tokens, ``exp``
  smoothing, effective order) and ``sacrebleu.corpus_bleu(hyps, [refs]).score / 100`` (no effective
  order at corpus level, as sacrebleu's default).
* ``"nltk"``: ``nltk.translate.bleu_score.sentence_bleu([ref.split()], hyp.split())`` with NLTK's
  defaults (whitespace tokens, weights 0.25 x 4, ``method0``) and ``corpus_bleu``.

The smoothing name picks the family: sacrebleu's ``none``/``floor``/``add-k``/``exp`` (here, with the
standard BLEU); NLTK's ``method0``-``method7`` and NLTK's way of combining them in
``evalkit/bleu_nltk.py``. The clipped n-gram matches are counted in ``evalkit/bleu_ngrams.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from evalkit.bleu_ngrams import (RefNgrams, clipped_counts, clipped_matches, ngram_counts,  # noqa: F401  (re-exported)
                                 ngrams)
from evalkit.bleu_tokenize import get_tokenizer
from evalkit.bleu_nltk import NLTK_METHODS, NltkContext, nltk_bleu, smooth_nltk  # noqa: F401  (re-exported)

PRESETS = {
    # tokenizer, smoothing, effective order at sentence level / at corpus level
    "sacrebleu": ("13a", "exp", True, False),
    "nltk": ("whitespace", "method0", False, False),
}
SACREBLEU_METHODS = ("none", "floor", "add-k", "exp")
# Defaults from Chen & Cherry (2014), as sacrebleu's BLEU.SMOOTH_DEFAULTS.
SACREBLEU_DEFAULTS = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}


def closest_ref_length(ref_lens: Sequence[int], hyp_len: int) -> int:
    """The reference length closest to ``hyp_len``; ties go to the shorter one (Papineni's r)."""
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def brevity_penalty(hyp_len: int, ref_len: int) -> float:
    """BP = 1 if c > r, 0 if c = 0, else exp(1 - r / c)   # Sec. 2.2.2, Papineni et al. 2002."""
    if hyp_len > ref_len:
        return 1.0
    if hyp_len == 0:
        return 0.0
    return math.exp(1 - ref_len / hyp_len)


def smooth_sacrebleu(correct: Sequence[int], total: Sequence[int], method: str = "exp",
                     value: float | None = None, effective_order: bool = False
                     ) -> tuple[list[float], int] | None:
    """The modified precisions p_n = correct / total (Sec. 2.1), smoothed as ``sacrebleu.BLEU.compute_bleu``.

    Args:
        correct: clipped n-gram matches per order (n = 1..N).
        total: hypothesis n-gram counts per order.
        method: ``none``, ``floor`` (zero precisions become ``value / total``), ``add-k`` (add ``value``
            to matches and totals for n > 1) or ``exp`` (NIST: the k-th zero precision becomes
            ``1 / (2^k * total)``), citing Chen & Cherry (2014).
        value: the parameter of ``floor`` (default 0.1) and ``add-k`` (default 1).
        effective_order: average only over the orders the hypothesis has n-grams for (sacrebleu stops
            at the first order with no hypothesis n-gram; its docstring says "precision 0", the code
            tests the n-gram total).

    Returns:
        ``(precisions, order)``: BLEU is ``BP * exp(mean(log p_n for n <= order))``, and 0 when one
        of those p_n is 0. ``None`` when no n-gram of any order matches (BLEU = 0, sacrebleu #141).
    """
    if value is None:
        value = SACREBLEU_DEFAULTS[method]
    max_order = len(correct)
    if not any(correct):
        return None
    correct, total = list(correct), list(total)
    precisions = [0.0] * max_order
    order = max_order
    nist_k = 1.0
    for n in range(1, max_order + 1):
        if method == "add-k" and n > 1:
            correct[n - 1] += value
            total[n - 1] += value
        if total[n - 1] == 0:
            break  # no hypothesis n-grams of this (and any higher) order
        if effective_order:
            order = n
        if correct[n - 1] == 0:
            if method == "exp":
                nist_k *= 2
                precisions[n - 1] = 1.0 / (nist_k * total[n - 1])
            elif method == "floor":
                precisions[n - 1] = value / total[n - 1]
        else:
            precisions[n - 1] = correct[n - 1] / total[n - 1]
    return precisions, order


def geometric_mean(precisions: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """exp(sum_n w_n log p_n) / sum_n w_n   # Sec. 2.3; uniform w_n = 1/N when ``weights`` is None.

    0 when a p_n is 0 (log 0: sacrebleu floors it at -9999999999, i.e. BLEU = 0).
    """
    if 0.0 in precisions:
        return 0.0
    if weights is None:  # sacrebleu: the sum of the logs, then divided by N
        return math.exp(sum([math.log(p) for p in precisions]) / len(precisions))
    return math.exp(sum(w * math.log(p) for w, p in zip(weights, precisions)) / sum(weights))


@dataclass
class BleuStats:
    """Sufficient statistics of one hypothesis (summable over a corpus).

    Attributes:
        hyp_len, ref_len: hypothesis length c and closest reference length r.
        correct: clipped matches per order; total: hypothesis n-grams per order.
        hyp_tokens, refs: the hypothesis tokens and reference strings (NLTK's method5/6 read them).
    """

    hyp_len: int
    ref_len: int
    correct: list[int]
    total: list[int]
    hyp_tokens: tuple[str, ...]
    refs: tuple[str, ...]


class BLEU:
    """A configured BLEU scorer; caches tokens and reference n-grams across calls.

    Args:
        preset: ``"sacrebleu"`` or ``"nltk"``: default tokenizer, smoothing and effective order.
        tokenize: ``"13a"`` or ``"whitespace"``.
        smooth: ``none``, ``floor``, ``add-k``, ``exp`` or ``method0``..``method7``.
        smooth_value: ``floor``/``add-k`` value, or NLTK's ``epsilon`` (method1).
        effective_order: sacrebleu family only: average over the orders the hypothesis has n-grams for.
        weights: w_n of Sec. 2.3 (their count sets N); default uniform over N = 4. With effective
            order, the weights of the orders kept are renormalised to sum to 1.
        lowercase: lowercase both sides before tokenising.
        auto_reweigh: NLTK's option (uniform weights over the hypothesis length when it is < 4).
        corpus: pick the preset's corpus-level default for ``effective_order``.
        nltk_alpha, nltk_k: NLTK's ``SmoothingFunction`` alpha (method6) and k (method4/7).
    """

    def __init__(self, preset: str = "sacrebleu", tokenize: str | None = None, smooth: str | None = None,
                 smooth_value: float | None = None, effective_order: bool | None = None,
                 weights: Sequence[float] | None = None, lowercase: bool = False,
                 auto_reweigh: bool = False, corpus: bool = False, nltk_alpha: float = 5, nltk_k: float = 5):
        tok, default_smooth, eff_sentence, eff_corpus = PRESETS[preset]
        self.tokenizer = get_tokenizer(tokenize or tok)
        self.smooth = smooth or default_smooth
        self.nltk_family = self.smooth in NLTK_METHODS
        if effective_order is None:
            effective_order = (eff_corpus if corpus else eff_sentence) and not self.nltk_family
        self.smooth_value, self.effective_order = smooth_value, effective_order
        self.weights = tuple(weights) if weights is not None else None
        self.max_order = len(self.weights) if self.weights is not None else 4
        self.lowercase, self.auto_reweigh = lowercase, auto_reweigh
        self.nltk_alpha, self.nltk_k = nltk_alpha, nltk_k
        self._ref_info = lru_cache(maxsize=2**14)(self._ref_info_uncached)

    def _ref_info_uncached(self, refs: tuple[str, ...]) -> tuple[RefNgrams, tuple[int, ...]]:
        tokens = [self.tokenizer(ref, self.lowercase) for ref in refs]
        return RefNgrams(tokens, self.max_order), tuple(len(t) for t in tokens)

    def stats(self, hyp: str, refs: str | Sequence[str]) -> BleuStats:
        """Sufficient statistics of ``hyp`` against one reference string or several."""
        refs = (refs,) if isinstance(refs, str) else tuple(refs)
        ref_ngrams, ref_lens = self._ref_info(refs)
        tokens = self.tokenizer(hyp, self.lowercase)
        c = len(tokens)
        correct = clipped_matches(tokens, ref_ngrams, self.max_order)
        total = [max(0, c - n) for n in range(self.max_order)]
        return BleuStats(c, closest_ref_length(ref_lens, c), correct, total, tokens, refs)

    def score_stats(self, stats: Sequence[BleuStats]) -> float:
        """BLEU of summed statistics (one item: sentence BLEU; many: corpus BLEU), 0-1 scale."""
        if len(stats) == 1:
            s = stats[0]
            hyp_len, ref_len, correct, total = s.hyp_len, s.ref_len, s.correct, s.total
        else:
            hyp_len, ref_len = sum(s.hyp_len for s in stats), sum(s.ref_len for s in stats)
            correct = [sum(s.correct[n] for s in stats) for n in range(self.max_order)]
            total = [sum(s.total[n] for s in stats) for n in range(self.max_order)]
        bp = brevity_penalty(hyp_len, ref_len)
        if self.nltk_family:
            return nltk_bleu(self, stats, correct, hyp_len, bp)
        smoothed = smooth_sacrebleu(correct, total, self.smooth, self.smooth_value, self.effective_order)
        if smoothed is None:
            return 0.0
        precisions, order = smoothed
        return bp * geometric_mean(precisions[:order], None if self.weights is None else self.weights[:order])

    def sentence(self, hyp: str, refs: str | Sequence[str]) -> float:
        """Sentence BLEU of ``hyp`` against one reference string or several, 0-1 scale."""
        return self.score_stats([self.stats(hyp, refs)])

    def corpus(self, hyps: Sequence[str], refs: Sequence[str | Sequence[str]]) -> float:
        """Corpus BLEU: statistics summed over the pairs ``(hyps[i], refs[i])`` before Sec. 2.3's mean."""
        return self.score_stats([self.stats(h, r) for h, r in zip(hyps, refs, strict=True)])


@lru_cache(maxsize=64)
def _scorer(corpus: bool, preset: str, options: tuple) -> BLEU:
    return BLEU(preset, corpus=corpus, **dict(options))


def _cached_scorer(corpus: bool, preset: str, options: dict) -> BLEU:
    """The `BLEU` scorer of these settings, built once (lists among the options become tuples)."""
    return _scorer(corpus, preset, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items())))


def bleu(hyp: str, ref: str | Sequence[str], preset: str = "sacrebleu", **options) -> float:
    """Sentence BLEU on the paper's 0-1 scale; ``options`` are those of ``BLEU`` (smooth=, tokenize= ...)."""
    return _cached_scorer(False, preset, options).sentence(hyp, ref)


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str | Sequence[str]], preset: str = "sacrebleu",
                **options) -> float:
    """Corpus BLEU (one reference string, or a list of them, per hypothesis), 0-1 scale."""
    return _cached_scorer(True, preset, options).corpus(hyps, refs)
