"""Clipped n-gram matches for BLEU (``evalkit/bleu.py``): the numerators p_n of Eq. 4 count them.

    matches_n = sum over hypothesis n-grams g of min(count_hyp(g), max over references count_ref(g))

``ngram_counts`` + ``clipped_counts`` compute this literally with Counters; ``RefNgrams`` +
``clipped_matches`` give the same numbers faster (set intersections, Counters only where n-grams
repeat), which is what ``evalkit.bleu.BLEU`` uses. N-grams are strings: tokens joined by one space.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence


def ngrams(tokens: Sequence[str], n: int) -> Iterable[str]:
    """The n-grams of ``tokens`` in order, as strings: the tokens joined by one space.

    Tokens never contain whitespace (both tokenisers split on it), so the joined string names the
    n-gram uniquely; strings, unlike tuples, are not tracked by the garbage collector, which keeps
    counting fast.
    """
    return tokens if n == 1 else map(" ".join, zip(*(tokens[i:] for i in range(n))))


def ngram_counts(tokens: Sequence[str], max_order: int = 4) -> list[Counter]:
    """count(g) of every n-gram g of each order n = 1..max_order."""
    return [Counter(ngrams(tokens, n)) for n in range(1, max_order + 1)]


def clipped_counts(hyp_counts: list[Counter], ref_counts: list[Counter]) -> list[int]:
    """Matches per order: sum over hypothesis n-grams of min(hyp count, reference count)."""
    correct = []
    for hyp, ref in zip(hyp_counts, ref_counts):
        common = hyp.keys() & ref.keys()
        correct.append(sum([min(hyp[g], ref[g]) for g in common]) if common else 0)
    return correct


class RefNgrams:
    """The n-grams of one or several references, built per order on first use.

    One reference: the set of its n-grams (built when an order is first asked for) and, only when a
    hypothesis needs them, their counts. Several: the maximum count of each n-gram over them.
    """

    __slots__ = ("tokens", "_sets", "_counts")

    def __init__(self, refs_tokens: Sequence[Sequence[str]], max_order: int = 4):
        self.tokens = refs_tokens[0] if len(refs_tokens) == 1 else None
        self._sets: list = [None] * max_order
        self._counts: list = [None] * max_order
        if self.tokens is None:  # several references: clip by the maximum count in any of them
            merged = ngram_counts(refs_tokens[0], max_order)
            for tokens in refs_tokens[1:]:
                for m, c in zip(merged, ngram_counts(tokens, max_order)):
                    for g, v in c.items():
                        if v > m[g]:
                            m[g] = v
            self._counts, self._sets = merged, [set(m) for m in merged]

    def keys(self, n: int) -> set:
        """The distinct reference n-grams of order n."""
        if self._sets[n - 1] is None:
            self._sets[n - 1] = set(ngrams(self.tokens, n))
        return self._sets[n - 1]

    def all_once(self, n: int) -> bool:
        """Whether no reference n-gram of order n repeats (then every reference count is 1)."""
        return self.tokens is not None and len(self.keys(n)) == max(0, len(self.tokens) - n + 1)

    def counts(self, n: int) -> Counter:
        """count_ref(g) for the n-grams g of order n (maximum over references)."""
        if self._counts[n - 1] is None:
            self._counts[n - 1] = Counter(ngrams(self.tokens, n))
        return self._counts[n - 1]


def clipped_matches(tokens: Sequence[str], ref: RefNgrams, max_order: int = 4) -> list[int]:
    """``clipped_counts`` computed fast: set intersections, Counters only where both sides repeat.

    When no hypothesis n-gram repeats, or no reference n-gram does, each common n-gram contributes
    min(count_hyp, count_ref) = 1, so the number of matches is the size of the intersection. An order
    without matches ends the loop: an n-gram can only match if its (n-1)-gram prefix does.
    """
    correct = []
    for n in range(1, max_order + 1):
        if correct and correct[-1] == 0:
            return correct + [0] * (max_order - len(correct))
        hyp_set = set(ngrams(tokens, n))
        common = hyp_set & ref.keys(n)
        if not common:
            correct.append(0)
        elif len(hyp_set) == len(tokens) - n + 1 or ref.all_once(n):
            correct.append(len(common))
        else:
            hyp_counts = Counter(filter(common.__contains__, ngrams(tokens, n)))  # only n-grams that can match
            ref_counts = ref.counts(n)
            correct.append(sum([min(hyp_counts[g], ref_counts[g]) for g in common]))
    return correct
