"""ROUGE-1, ROUGE-2 and ROUGE-L (Lin 2004), equal to `rouge_score.rouge_scorer.RougeScorer`.

Tokens are rouge_score's default tokenizer: lowercase, every run of characters outside [a-z0-9]
becomes a space, split; with `stem=True` tokens longer than 3 characters are Porter-stemmed
(`evalkit.porter`, nltk's default mode, as rouge_score uses).

With the hypothesis's and the reference's token lists:

    ROUGE-N:  P = overlap / hyp n-grams, R = overlap / ref n-grams   (overlap: clipped n-gram counts)
    ROUGE-L:  P = LCS / hyp tokens,      R = LCS / ref tokens
    F1      = 2 P R / (P + R)                                        # Eq. 5-6 of the paper
    F_beta  = (1 + beta^2) P R / (R + beta^2 P)                      # Eq. 7 (beta = 1.2: pycocoevalcap)

rouge_score reports F1 for all three; that is the default here (`beta=1.0`). The paper's Eq. 7 is
the recall-weighted F_beta for ROUGE-L, so `beta` changes ROUGE-L only; ROUGE-1/2 stay F1 (Eq. 5-6).
"""
from __future__ import annotations

import functools
import math
import re
from collections import Counter
from typing import NamedTuple, Sequence

from evalkit.porter import PorterStemmer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_NGRAM_ORDER = {f"rouge{n}": n for n in range(1, 10)}  # ROUGE-N types and their n
_NON_ALNUM = re.compile(r"[^a-z0-9]+")  # rouge_score.tokenize.NON_ALPHANUM_RE
_STEMMER = PorterStemmer()  # rouge_score's DefaultTokenizer: nltk's PorterStemmer() (NLTK_EXTENSIONS)
# lcs_length's table cells above which lcs_length_bits takes over. Measured (CPython 3.11): the DP costs about
# 0.15 us a cell, lcs_length_bits about 1 us for a short pair, so the DP runs up to 4 x 4 tokens (< 3 us).
DP_CELLS = 16
LONG_SIDE = 4096  # tokens: above this, lcs_length_bits puts the shorter sequence in the bit vector
LCS_CELL_LIMIT = 10**11  # hyp tokens x ref tokens: select_items excludes larger pairs as too_long (about 10 s of LCS)


class Score(NamedTuple):
    """Precision, recall and F of one ROUGE type (the fields of rouge_score's `Score`)."""

    precision: float
    recall: float
    fmeasure: float


@functools.lru_cache(maxsize=1 << 15)
def _tokens(text: str, stem: bool) -> tuple[str, ...]:
    tokens = _NON_ALNUM.sub(" ", text.lower()).split()
    if stem:
        stem_of = _STEMMER.stem
        tokens = [stem_of(t) if len(t) > 3 else t for t in tokens]  # only words longer than 3 chars
        tokens = [t for t in tokens if t]
    return tuple(tokens)


def rouge_tokenize(text: str, stem: bool = False) -> list[str]:
    """rouge_score's default tokenizer: `rouge_score.tokenize.tokenize(text, stemmer)`."""
    return list(_tokens(text, stem))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (Lin 2004, Sec. 3.1; rouge_score's ``_lcs_table``).

    The textbook dynamic programme: ``prev[j]`` holds LCS(a[:i], b[:j]) for the row i done last. Above
    ``DP_CELLS`` table cells, ``lcs_length_bits`` returns the same number faster.
    """
    if len(a) * len(b) > DP_CELLS:
        return lcs_length_bits(a, b)
    prev = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))  # the LCS recurrence
        prev = row
    return prev[-1]


def lcs_length_bits(a: Sequence[str], b: Sequence[str], long_side: float = LONG_SIDE) -> int:
    """``lcs_length`` bit-parallel (Allison & Dix 1986; Hyyro 2004): the same number, 64 cells per machine word.

    One sequence is a bit vector V (bit i is 1 while row i of the DP table has no LCS increment yet);
    each token of the other costs a few big-integer operations instead of a DP row, and
    LCS = len(a) - popcount(V). Cost: len(b) steps of ceil(len(a) / 64) machine words each, plus
    building a's masks. The vector side is the longer sequence while both are at most ``long_side``
    tokens (fewer Python steps), else the shorter one: masks over a long side would cost
    O(len(a)^2 / 64) to build, which made a 20 MB response take minutes.
    """
    if (len(a) < len(b)) == (max(len(a), len(b)) <= long_side):
        a, b = b, a
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    get = masks.get
    for match in filter(None, map(get, b)):  # tokens of b absent from a change nothing
        u = v & match
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def lcs_too_long(hyp: str, ref: str) -> bool:
    """Whether ROUGE-L of this pair would exceed `LCS_CELL_LIMIT` (hyp tokens x ref tokens).

    Exact LCS needs that many table cells in the worst case (no algorithm is much faster in general);
    `lcs_length_bits` does 64 per machine word, about 1e10 cells per second on one core.
    Stemming never changes the number of tokens, so the count is taken without it.
    """
    return len(_tokens(hyp, False)) * len(_tokens(ref, False)) > LCS_CELL_LIMIT


def f1(precision: float, recall: float) -> float:
    """Harmonic mean of P and R, rouge_score's `scoring.fmeasure` (Eq. 5-6)."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def check_beta(beta: float) -> float:
    """`beta` itself if it is a finite number > 0; else TypeError / ValueError saying so (`ScoreConfig` calls it).

    NaN would make every F_beta 0.0 (every comparison with NaN is false) and inf would make it NaN.
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"rouge beta must be a number, got {type(beta).__name__}")
    if not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"rouge beta must be a finite number > 0, got {beta}")
    return beta


def f_beta(precision: float, recall: float, beta: float = 1.0) -> float:
    """(1 + beta^2) P R / (R + beta^2 P) (Eq. 7); beta > 1 weighs recall more; beta = 1 is F1."""
    if beta == 1.0:
        return f1(precision, recall)
    b2 = beta * beta
    denominator = recall + b2 * precision
    return (1 + b2) * precision * recall / denominator if denominator > 0 else 0.0


def _ngram_score(hyp: Sequence[str], ref: Sequence[str], n: int) -> Score:
    """Clipped n-gram overlap as rouge_score's `_score_ngrams` (denominators at least 1)."""
    if n == 1:
        hyp_counts, ref_counts = Counter(hyp), Counter(ref)
    else:
        hyp_counts = Counter(zip(*(hyp[k:] for k in range(n))))
        ref_counts = Counter(zip(*(ref[k:] for k in range(n))))
    shared = hyp_counts.keys() & ref_counts.keys()
    overlap = sum(map(min, map(hyp_counts.__getitem__, shared), map(ref_counts.__getitem__, shared)))
    precision = overlap / max(len(hyp) - n + 1, 1)
    recall = overlap / max(len(ref) - n + 1, 1)
    return Score(precision, recall, f1(precision, recall))


def _lcs_score(hyp: Sequence[str], ref: Sequence[str], beta: float) -> Score:
    if not hyp or not ref:
        return Score(0.0, 0.0, 0.0)
    lcs = lcs_length(hyp, ref)
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return Score(precision, recall, f_beta(precision, recall, beta))


def rouge_scores(hyp: str, ref: str, beta: float = 1.0, stem: bool = False,
                 rouge_types: Sequence[str] = ROUGE_TYPES) -> dict[str, Score]:
    """Precision, recall and F of each ROUGE type, as `RougeScorer(rouge_types, use_stemmer=stem).score(ref, hyp)`.

    Args:
        hyp: the system's response.
        ref: the reference response.
        beta: F_beta of ROUGE-L (Eq. 7); 1.0 gives rouge_score's F1, 1.2 pycocoevalcap's.
        stem: Porter-stem tokens longer than 3 characters (rouge_score's `use_stemmer`).
        rouge_types: any of "rouge1".."rouge9" and "rougeL".
    """
    hyp_tokens, ref_tokens = _tokens(hyp, stem), _tokens(ref, stem)
    return {t: _lcs_score(hyp_tokens, ref_tokens, beta) if t == "rougeL"
            else _ngram_score(hyp_tokens, ref_tokens, _NGRAM_ORDER[t]) for t in rouge_types}


def rouge(hyp: str, ref: str, beta: float = 1.0, stem: bool = False) -> dict[str, float]:
    """F values {"rouge1", "rouge2", "rougeL"} in [0, 1] of `hyp` against `ref` (see `rouge_scores`)."""
    return {k: s.fmeasure for k, s in rouge_scores(hyp, ref, beta, stem).items()}
