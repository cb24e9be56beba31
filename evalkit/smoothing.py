"""Smoothing of BLEU's n-gram precisions: sacrebleu's four methods and NLTK's ``method0``-``method7``.

Zero n-gram matches make the geometric mean of Eq. 4 (Papineni et al. 2002) zero; sentence-level
BLEU therefore smooths the precisions. Two families are implemented, each exactly as its library does:

* sacrebleu (``none``, ``floor``, ``add-k``, ``exp``), citing Chen & Cherry (2014), with sacrebleu's
  *effective order*: only orders for which the hypothesis has at least one n-gram count (sacrebleu
  stops at the first order with no hypothesis n-gram; its docstring says "precision 0", the code
  tests the n-gram total).
* NLTK's ``SmoothingFunction().method0`` ... ``method7`` (nltk 3.x ``bleu_score.py``), quirks included:
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
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

SACREBLEU_METHODS = ("none", "floor", "add-k", "exp")
NLTK_METHODS = tuple(f"method{i}" for i in range(8))
# Defaults from Chen & Cherry (2014), as sacrebleu's BLEU.SMOOTH_DEFAULTS.
SACREBLEU_DEFAULTS = {"none": None, "floor": 0.1, "add-k": 1, "exp": None}


class BleuWarning(UserWarning):
    """Issued by NLTK's ``method0`` when an n-gram order has no match (as NLTK warns)."""


def smooth_sacrebleu(correct: Sequence[int], total: Sequence[int], method: str = "exp",
                     value: float | None = None, effective_order: bool = False
                     ) -> tuple[list[float], int] | None:
    """Smoothed precisions p_n (0-1 scale) and the order to average over, as ``sacrebleu.BLEU.compute_bleu``.

    Args:
        correct: clipped n-gram matches per order (n = 1..N).
        total: hypothesis n-gram counts per order.
        method: ``none``, ``floor`` (zero precisions become ``value / total``), ``add-k`` (add ``value``
            to matches and totals for n > 1) or ``exp`` (NIST: the k-th zero precision becomes
            ``1 / (2^k * total)``).
        value: the parameter of ``floor`` (default 0.1) and ``add-k`` (default 1).
        effective_order: average only over the orders the hypothesis has n-grams for.

    Returns:
        ``(precisions, order)``: BLEU is ``BP * exp(mean(log p_n for n <= order))``, and 0 when one
        of those p_n is 0. ``None`` when no n-gram of any order matches (BLEU = 0, sacrebleu #141).
    """
    if method not in SACREBLEU_DEFAULTS:
        raise ValueError(f"unknown sacrebleu smoothing {method!r}; choose one of {SACREBLEU_METHODS}")
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
    raise ValueError(f"unknown nltk smoothing {method!r}; choose one of {NLTK_METHODS}")


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
