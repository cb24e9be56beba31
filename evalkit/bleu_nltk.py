"""NLTK compatibility for BLEU: ``nltk.translate.bleu_score``'s ``method0``-``method7`` and its arithmetic.

The standard BLEU and sacrebleu's smoothing live in ``evalkit/bleu.py``; this module reproduces
NLTK's ``SmoothingFunction().method0`` ... ``method7`` (nltk 3.x ``bleu_score.py``, after Chen & Cherry
2014) and the way NLTK combines the precisions, quirks included:
``method0`` replaces a zero precision by ``sys.float_info.min`` (so BLEU is ~1e-77, not 0) and
warns; ``method4``/``method7`` use the corpus hypothesis length; ``method5`` always adds the
5-gram precision of the *last* sentence, whatever the number of weights; ``method6`` needs a
non-zero 3-gram precision (``p_n[2]``; NLTK's message says "bigrams") and uses the last sentence's
n-gram counts.

Precisions enter the NLTK methods as exact ``Fraction`` values plus their *unreduced* numerators and
denominators (NLTK keeps ``Fraction(_normalize=False)``; ``method1/2/6`` read the raw parts).
"""
from __future__ import annotations

import math
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

NLTK_METHODS = tuple(f"method{i}" for i in range(8))


class BleuWarning(UserWarning):
    """Issued by NLTK's ``method0`` when an n-gram order has no match (as NLTK warns)."""


@dataclass
class NltkContext:
    """What NLTK's smoothing methods read besides the precisions.

    Attributes:
        hyp_len: total hypothesis length (corpus level: summed over sentences).
        hypothesis: tokens of the last hypothesis NLTK's loop saw (used by ``method5``/``method6``).
        precision_at: ``n -> (matches, max(1, ngrams))`` of that last hypothesis against its references.
    """

    hyp_len: int
    hypothesis: Sequence[str]
    precision_at: Callable[[int], tuple[int, int]]


def smooth_nltk(method: str, numerators: Sequence[int], denominators: Sequence[int], ctx: NltkContext,
                epsilon: float = 0.1, alpha: float = 5, k: float = 5) -> list:
    """Apply ``nltk.translate.bleu_score.SmoothingFunction(epsilon, alpha, k).<method>``.

    Args:
        method: ``"method0"`` ... ``"method7"``.
        numerators, denominators: raw (unreduced) clipped matches and n-gram counts per order.
        ctx: hypothesis length and last-sentence data, see ``NltkContext``.
        epsilon, alpha, k: NLTK's ``SmoothingFunction`` parameters (Chen & Cherry 2014 values).

    Returns:
        The smoothed precisions (``Fraction`` or ``float``), in NLTK's arithmetic.
    """
    p_n = [Fraction(a, b) for a, b in zip(numerators, denominators)]
    nums, dens = list(numerators), list(denominators)
    if method == "method0":  # no smoothing; a zero becomes the smallest float (log = -708.4)
        out = []
        for i, p in enumerate(p_n):
            if nums[i] != 0:
                out.append(p)
            else:
                warnings.warn(f"The hypothesis contains 0 counts of {i + 1}-gram overlaps; BLEU evaluates "
                              "to ~0 without smoothing (nltk method0).", BleuWarning, stacklevel=3)
                out.append(sys.float_info.min)
        return out
    if method == "method1":  # add epsilon to zero match counts
        return [(nums[i] + epsilon) / dens[i] if nums[i] == 0 else p for i, p in enumerate(p_n)]
    if method == "method2":  # add 1 to matches and counts for n > 1 (Lin & Och 2004)
        return [Fraction(nums[i] + 1, dens[i] + 1) if i != 0 else p for i, p in enumerate(p_n)]
    if method == "method3":  # NIST geometric sequence: k-th zero becomes 1 / (2^k * count)
        return _nist(p_n, nums, dens)
    if method == "method4":
        return _method4(p_n, nums, dens, ctx.hyp_len, k)
    if method == "method5":
        return _method5(p_n, ctx)
    if method == "method6":
        return _method6(p_n, nums, ctx, alpha)
    if method == "method7":  # method4 then method5
        return _method5(_method4(p_n, nums, dens, ctx.hyp_len, k), ctx)


def _nist(p_n: list, nums: list[int], dens: list[int]) -> list:
    incvnt = 1
    for i in range(len(p_n)):
        if nums[i] == 0:
            p_n[i] = 1 / (2**incvnt * dens[i])
            incvnt += 1
    return p_n


def _method4(p_n: list, nums: list[int], dens: list[int], hyp_len: int, k: float) -> list:
    # Shorter hypotheses get smaller smoothed counts: ln(len) / (2^i * k), as NLTK computes it.
    incvnt = 1
    for i in range(len(p_n)):
        if nums[i] == 0 and hyp_len > 1:
            numerator = 1 / (2**incvnt * k / math.log(hyp_len))
            p_n[i] = numerator / dens[i]
            incvnt += 1
    return p_n


def _method5(p_n: list, ctx: NltkContext) -> list:
    # Average of the (n-1)-, n- and (n+1)-gram precisions; the extra one is always the 5-gram.
    num5, den5 = ctx.precision_at(5)
    p_plus1 = list(p_n) + [Fraction(num5, den5)]
    m = {-1: p_n[0] + 1}
    for i, p_i in enumerate(list(p_n)):
        p_n[i] = (m[i - 1] + p_i + p_plus1[i + 1]) / 3
        m[i] = p_n[i]
    return p_n


def _method6(p_n: list, nums: list[int], ctx: NltkContext, alpha: float) -> list:
    # Interpolate with a prior p_{n-1}^2 / p_{n-2} (Gao & He 2013) from the third order on.
    if len(p_n) < 3 or not p_n[2]:
        raise ValueError("nltk smoothing method6 needs a non-zero 3-gram precision (nltk asserts p_n[2], "
                         "its message says 'bigrams')")
    for i in range(2, len(p_n)):
        pi0 = 0 if p_n[i - 2] == 0 else p_n[i - 1] ** 2 / p_n[i - 2]
        m = nums[i]
        length = max(0, len(ctx.hypothesis) - i)  # number of (i+1)-grams in the last hypothesis
        p_n[i] = (m + alpha * pi0) / (length + alpha)
    return p_n


def nltk_bleu(scorer, stats: Sequence, nums: list[int], hyp_len: int, bp: float) -> float:
    """BLEU as ``nltk.translate.bleu_score.corpus_bleu`` computes it, under the settings of ``scorer``.

    Args:
        scorer: the ``evalkit.bleu.BLEU`` whose smoothing, weights and tokenizer apply.
        stats: the ``BleuStats`` of each sentence (one for sentence BLEU).
        nums: clipped matches per order, summed over ``stats``.
        hyp_len: total hypothesis length; bp: the brevity penalty.
    """
    if nums[0] == 0:
        return 0.0  # NLTK returns 0 when no unigram matches
    # NLTK counts at least 1 n-gram per sentence and order in the denominator.
    dens = [sum(max(1, s.total[n]) for s in stats) for n in range(scorer.max_order)]
    # NLTK passes the loop's last hypothesis and references to the smoothing function.
    last = stats[-1]
    ctx = NltkContext(hyp_len, last.hyp_tokens, lambda n: _precision_at(scorer, last, n))
    kwargs = {} if scorer.smooth_value is None else {"epsilon": scorer.smooth_value}
    p_n = smooth_nltk(scorer.smooth, nums, dens, ctx, alpha=scorer.nltk_alpha, k=scorer.nltk_k, **kwargs)
    weights = scorer.weights or (0.25, 0.25, 0.25, 0.25)
    if scorer.auto_reweigh and hyp_len < 4 and weights == (0.25, 0.25, 0.25, 0.25):
        weights = (1 / hyp_len,) * hyp_len
    return bp * math.exp(math.fsum(w * math.log(p) for w, p in zip(weights, p_n) if p > 0))


def _precision_at(scorer, stats, n: int) -> tuple[int, int]:
    """(clipped matches, max(1, n-grams)) of order n of one sentence, as NLTK's ``modified_precision``."""
    tokens = stats.hyp_tokens
    hyp = Counter(zip(*(tokens[i:] for i in range(n))))
    best: Counter = Counter()
    for ref in (scorer.tokenizer(r, scorer.lowercase) for r in stats.refs):
        for g, v in Counter(zip(*(ref[i:] for i in range(n)))).items():
            best[g] = max(best[g], v)
    return sum(min(v, best[g]) for g, v in hyp.items()), max(1, sum(hyp.values()))

