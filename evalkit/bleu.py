"""BLEU (Eq. 4, Papineni et al. 2002): clipped n-gram precisions, brevity penalty, weighted log mean.

    BLEU = BP * exp( sum_n w_n * log p_n )                                   # Eq. 4, Papineni et al. 2002
    p_n  = sum_g min(count_hyp(g), max_ref count_ref(g)) / sum_g count_hyp(g)   (g: the n-grams)
    BP   = 1 if c > r else exp(1 - r / c)   (c: hypothesis length, r: closest reference length)

Two presets reproduce the libraries people cite, on the paper's 0-1 scale:

* ``"sacrebleu"``: ``sacrebleu.sentence_bleu(hyp, [ref]).score / 100`` (13a tokens, ``exp``
  smoothing, effective order) and ``sacrebleu.corpus_bleu(hyps, [refs]).score / 100`` (no effective
  order at corpus level, as sacrebleu's default).
* ``"nltk"``: ``nltk.translate.bleu_score.sentence_bleu([ref.split()], hyp.split())`` with NLTK's
  defaults (whitespace tokens, weights 0.25 x 4, ``method0``: no smoothing, ~0 and a warning when an
  order has no match, exactly 0 when no unigram matches) and ``corpus_bleu``.

The smoothing name picks the formula family: ``none``/``floor``/``add-k``/``exp`` combine the
statistics as sacrebleu does; ``method0``-``method7`` as NLTK does (NLTK counts at least one n-gram per
sentence and order in the denominators). See ``evalkit/smoothing.py``; the clipped n-gram matches
are counted in ``evalkit/bleu_ngrams.py``.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from evalkit.bleu_ngrams import (RefNgrams, clipped_counts, clipped_matches, ngram_counts,  # noqa: F401  (re-exported)
                                 ngrams)
from evalkit.bleu_tokenize import get_tokenizer
from evalkit.smoothing import NLTK_METHODS, SACREBLEU_METHODS, NltkContext, smooth_nltk, smooth_sacrebleu

PRESETS = {
    # tokenizer, smoothing, effective order at sentence level / at corpus level
    "sacrebleu": ("13a", "exp", True, False),
    "nltk": ("whitespace", "method0", False, False),
}


def closest_ref_length(ref_lens: Sequence[int], hyp_len: int) -> int:
    """The reference length closest to ``hyp_len``; ties go to the shorter one (Papineni's r)."""
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def _check_text(value, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"BLEU {name} must be a string, got {type(value).__name__}")
    return value


def _check_refs(refs, name: str = "reference") -> tuple[str, ...]:
    """One reference string, or a non-empty sequence of them, as a tuple."""
    if isinstance(refs, str):
        return (refs,)
    if refs is None or not hasattr(refs, "__iter__") or isinstance(refs, (bytes, dict)):
        raise TypeError(f"BLEU {name} must be a string or a list of strings, got {type(refs).__name__}")
    refs = tuple(refs)
    if not refs:
        raise ValueError("BLEU needs at least one reference")
    for r in refs:
        _check_text(r, name)
    return refs


def _check_number(value, name: str, minimum: float = 0.0, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"BLEU {name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"BLEU {name} must be a finite number >= {minimum:g}, got {value}")


def brevity_penalty(hyp_len: int, ref_len: int) -> float:
    """BP = 1 if c > r, 0 if c = 0, else exp(1 - r / c)   # Sec. 2.2.2, Papineni et al. 2002."""
    for name, n in (("hyp_len", hyp_len), ("ref_len", ref_len)):
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"brevity_penalty {name} must be an integer, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"brevity_penalty {name} must be >= 0, got {n}")
    if hyp_len > ref_len:
        return 1.0
    if hyp_len == 0:
        return 0.0
    return math.exp(1 - ref_len / hyp_len)


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
        weights: w_n of Eq. 4 (their count sets N); default uniform over N = 4. With effective
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
        if preset not in PRESETS:
            raise ValueError(f"unknown BLEU preset {preset!r}; choose one of {sorted(PRESETS)}")
        for name, flag in (("lowercase", lowercase), ("auto_reweigh", auto_reweigh), ("corpus", corpus)):
            if not isinstance(flag, bool):
                raise TypeError(f"BLEU {name} must be True or False, got {flag!r}")
        if effective_order is not None and not isinstance(effective_order, bool):
            raise TypeError(f"BLEU effective_order must be None, True or False, got {effective_order!r}")
        _check_number(smooth_value, "smooth_value", allow_none=True)
        _check_number(nltk_alpha, "nltk_alpha")
        _check_number(nltk_k, "nltk_k")
        if weights is not None:
            if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__"):
                raise TypeError(f"BLEU weights must be a sequence of numbers, got {type(weights).__name__}")
            weights = tuple(weights)
            for w in weights:
                _check_number(w, "weight")
            if not weights or sum(weights) <= 0:
                raise ValueError(f"BLEU weights must be non-empty with a positive sum, got {weights}")
        tok, default_smooth, eff_sentence, eff_corpus = PRESETS[preset]
        self.tokenizer = get_tokenizer(tokenize or tok)
        self.smooth = smooth or default_smooth
        if self.smooth not in SACREBLEU_METHODS + NLTK_METHODS:
            raise ValueError(f"unknown BLEU smoothing {self.smooth!r}; choose one of "
                             f"{SACREBLEU_METHODS + NLTK_METHODS}")
        self.nltk_family = self.smooth in NLTK_METHODS
        if effective_order is None:
            effective_order = (eff_corpus if corpus else eff_sentence) and not self.nltk_family
        if effective_order and self.nltk_family:
            raise ValueError("effective_order belongs to sacrebleu's smoothing methods; NLTK's use auto_reweigh")
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
        _check_text(hyp, "hypothesis")
        refs = _check_refs(refs)
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
            # NLTK counts at least 1 n-gram per sentence and order in the denominator.
            dens = [sum(max(1, s.total[n]) for s in stats) for n in range(self.max_order)]
            return self._combine_nltk(correct, dens, stats[-1], hyp_len, bp)
        smoothed = smooth_sacrebleu(correct, total, self.smooth, self.smooth_value, self.effective_order)
        if smoothed is None:
            return 0.0
        precisions, order = smoothed
        if 0.0 in precisions[:order]:
            return 0.0  # log 0: sacrebleu floors it at -9999999999, i.e. BLEU = 0
        if self.weights is None:  # sacrebleu: uniform weights 1 / order
            return bp * math.exp(sum([math.log(p) for p in precisions[:order]]) / order)
        w = self.weights[:order]
        return bp * math.exp(sum(wi * math.log(p) for wi, p in zip(w, precisions)) / sum(w))

    def _combine_nltk(self, nums: list[int], dens: list[int], last: BleuStats, hyp_len: int, bp: float) -> float:
        if nums[0] == 0:
            return 0.0  # NLTK returns 0 when no unigram matches
        # NLTK passes the loop's last hypothesis and references to the smoothing function.
        ctx = NltkContext(hyp_len, last.hyp_tokens, lambda n: self._precision_at(last, n))
        kwargs = {} if self.smooth_value is None else {"epsilon": self.smooth_value}
        p_n = smooth_nltk(self.smooth, nums, dens, ctx, alpha=self.nltk_alpha, k=self.nltk_k, **kwargs)
        weights = self.weights or (0.25, 0.25, 0.25, 0.25)
        if self.auto_reweigh and hyp_len < 4 and weights == (0.25, 0.25, 0.25, 0.25):
            weights = (1 / hyp_len,) * hyp_len
        return bp * math.exp(math.fsum(w * math.log(p) for w, p in zip(weights, p_n) if p > 0))

    def _precision_at(self, stats: BleuStats, n: int) -> tuple[int, int]:
        tokens = stats.hyp_tokens
        hyp = Counter(zip(*(tokens[i:] for i in range(n))))
        refs = [self.tokenizer(r, self.lowercase) for r in stats.refs]
        best: Counter = Counter()
        for ref in refs:
            for g, v in Counter(zip(*(ref[i:] for i in range(n)))).items():
                best[g] = max(best[g], v)
        return sum(min(v, best[g]) for g, v in hyp.items()), max(1, sum(hyp.values()))

    def sentence(self, hyp: str, refs: str | Sequence[str]) -> float:
        """Sentence BLEU of ``hyp`` against one reference string or several, 0-1 scale."""
        return self.score_stats([self.stats(hyp, refs)])

    def corpus(self, hyps: Sequence[str], refs: Sequence[str | Sequence[str]]) -> float:
        """Corpus BLEU: statistics summed over the pairs ``(hyps[i], refs[i])`` before Eq. 4."""
        for name, seq in (("hypotheses", hyps), ("references", refs)):
            if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
                raise TypeError(f"corpus BLEU {name} must be a list (one entry per segment), got {type(seq).__name__}")
        if len(hyps) != len(refs):
            raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
        if not hyps:
            raise ValueError("corpus BLEU needs at least one hypothesis")
        return self.score_stats([self.stats(h, r) for h, r in zip(hyps, refs)])


@lru_cache(maxsize=64)
def _scorer(corpus: bool, preset: str, options: tuple) -> BLEU:
    return BLEU(preset, corpus=corpus, **dict(options))


def _cached_scorer(corpus: bool, preset: str, options: dict) -> BLEU:
    """The `BLEU` scorer of these settings, built once (options must be hashable: lists become tuples)."""
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    try:
        return _scorer(corpus, preset, tuple(sorted(options.items())))
    except TypeError as e:
        if "unhashable" not in str(e):
            raise
        return BLEU(preset, corpus=corpus, **options)  # an unhashable option: its own check says what is wrong


def bleu(hyp: str, ref: str | Sequence[str], preset: str = "sacrebleu", **options) -> float:
    """Sentence BLEU on the paper's 0-1 scale; ``options`` are those of ``BLEU`` (smooth=, tokenize= ...)."""
    _check_text(hyp, "hypothesis")
    ref = _check_refs(ref)
    return _cached_scorer(False, preset, options).sentence(hyp, ref)


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str | Sequence[str]], preset: str = "sacrebleu",
                **options) -> float:
    """Corpus BLEU (one reference string, or a list of them, per hypothesis), 0-1 scale."""
    return _cached_scorer(True, preset, options).corpus(hyps, refs)
