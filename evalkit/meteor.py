"""METEOR (Banerjee & Lavie 2005; Lavie & Agarwal 2007), equal to nltk's `single_meteor_score`.

`meteor(hyp, ref)` equals `nltk.translate.meteor_score.single_meteor_score(ref.split(), hyp.split())`:
whitespace tokens, each lowercased with `str.lower`, aligned in three stages, each on the words the
previous stage left unmatched:

1. exact: hypothesis words from last to first each take the last free reference word equal to it;
2. stem: the same on Porter stems (`evalkit.porter`, nltk's default mode);
3. synonym: on those stems, a hypothesis word takes the last free reference word that is a lemma
   name (without '_') of one of its WordNet synsets (nltk's quirk: the synsets of the stem).

With m matches, t hypothesis and r reference words, P = m/t and R = m/r:

    Fmean   = P R / (alpha P + (1 - alpha) R)      # = 10PR/(R+9P) at alpha=0.9: Eq. 8 of the paper
    Penalty = gamma (chunks / m) ** beta           # Lavie & Agarwal 2007; the paper's Eq. 8 omits it
    METEOR  = (1 - Penalty) Fmean

where chunks is the fewest runs of matches adjacent in both sentences. Without WordNet the synonym
stage is off (`SYNONYMS_OFF_NOTE`); reports must say so.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Any, Callable

from evalkit.porter import PorterStemmer
from evalkit.wordnet import WordNet, load_wordnet

SYNONYMS_OFF_NOTE = "METEOR synonym stage off: WordNet 3.0 not found (set WORDNET_DIR or install wordnet-base)"

AUTO: Any = object()  # default `wordnet`: the database `evalkit.wordnet.load_wordnet()` finds
_STEMMER = PorterStemmer()  # nltk's METEOR uses PorterStemmer() in its default NLTK_EXTENSIONS mode
_AUTO_STATE: dict[str, Any] = {}
_SYNONYMS: "weakref.WeakKeyDictionary[Any, dict[str, frozenset[str]]]" = weakref.WeakKeyDictionary()

Match = tuple[int, int]  # (hypothesis position, reference position)
Words = list[tuple[int, str]]  # (original position, word) still unmatched


def _auto_wordnet() -> WordNet | None:
    if "wordnet" not in _AUTO_STATE:
        _AUTO_STATE["wordnet"] = load_wordnet()
        if _AUTO_STATE["wordnet"] is None:
            warnings.warn(SYNONYMS_OFF_NOTE, stacklevel=3)
    return _AUTO_STATE["wordnet"]


def synonyms_available() -> bool:
    """True when a WordNet database was found, so METEOR's synonym stage is on by default."""
    return _auto_wordnet() is not None


def _synonym_lookup(wordnet: Any) -> Callable[[str], frozenset[str]]:
    """word -> lemma names without '_' of its synsets (nltk's filter), cached per reader.

    Accepts this package's `WordNet` or any reader with nltk's `synsets(word)` / `lemma_names()`.
    """
    try:
        cache = _SYNONYMS.setdefault(wordnet, {})
    except TypeError:  # an object that refuses weak references: no cache across calls
        cache = {}
    if isinstance(wordnet, WordNet):
        names_of: Callable[[str], Any] = wordnet.synonyms
    else:
        def names_of(word: str) -> Any:
            return (name for synset in wordnet.synsets(word) for name in synset.lemma_names())

    def lookup(word: str) -> frozenset[str]:
        found = cache.get(word)
        if found is None:
            found = cache[word] = frozenset(n for n in names_of(word) if "_" not in n)
        return found
    return lookup


def _match(hyp: Words, ref: Words, synonyms: Callable[[str], frozenset[str]] | None = None,
           ) -> tuple[list[Match], Words, Words]:
    """One alignment stage: nltk's `_match_enums`, or `_enum_wordnetsyn_match` given `synonyms`.

    From the last hypothesis word to the first, each takes the free reference word with the highest
    position that equals it (or, with `synonyms`, equals it or one of its synonyms).

    Returns:
        The matches (original positions), then the unmatched hypothesis and reference words.
    """
    ref_words = {word for _, word in ref}
    wanted: list[tuple[int, Any]] = []  # (i, the reference words hyp[i] may take), last word first
    for i in range(len(hyp) - 1, -1, -1):
        word = hyp[i][1]
        if synonyms is None:
            if word in ref_words:
                wanted.append((i, (word,)))
        else:
            options = synonyms(word).intersection(ref_words)
            if word in ref_words:
                options = options.union((word,))
            if options:
                wanted.append((i, options))
    if not wanted:
        return [], hyp, ref
    positions: dict[str, list[int]] = {}
    for j, (_, word) in enumerate(ref):
        positions.setdefault(word, []).append(j)
    matches: list[Match] = []
    used_h: set[int] = set()
    used_r: set[int] = set()
    for i, options in wanted:
        best_word, best_j = None, -1
        for word in options:
            free = positions[word]
            if free and free[-1] > best_j:
                best_word, best_j = word, free[-1]
        if best_word is not None:
            positions[best_word].pop()
            used_h.add(i)
            used_r.add(best_j)
            matches.append((hyp[i][0], ref[best_j][0]))
    return (matches, [p for i, p in enumerate(hyp) if i not in used_h],
            [p for j, p in enumerate(ref) if j not in used_r])


def align(hyp_words: list[str], ref_words: list[str], wordnet: Any = AUTO) -> list[Match]:
    """Matches (hypothesis position, reference position) sorted by hypothesis position.

    Args:
        hyp_words: hypothesis tokens, already preprocessed (lowercased).
        ref_words: reference tokens, already preprocessed.
        wordnet: a reader (`evalkit.wordnet.WordNet` or nltk's), None to turn synonyms off, or AUTO.
    """
    if wordnet is AUTO:
        wordnet = _auto_wordnet()
    hyp: Words = list(enumerate(hyp_words))
    ref: Words = list(enumerate(ref_words))
    exact, hyp, ref = _match(hyp, ref)  # stage 1: exact
    stem = _STEMMER.stem
    stemmed, hyp, ref = _match([(i, stem(w)) for i, w in hyp], [(j, stem(w)) for j, w in ref])  # stage 2
    synonym: list[Match] = []
    if wordnet is not None and hyp and ref:  # stage 3 works on the stems stage 2 left, as nltk's
        synonym, hyp, ref = _match(hyp, ref, _synonym_lookup(wordnet))
    return sorted(exact + stemmed + synonym)


def count_chunks(matches: list[Match]) -> int:
    """Fewest chunks: runs of matches adjacent in both hypothesis and reference (1 when empty, as nltk)."""
    chunks = 1
    for (h0, r0), (h1, r1) in zip(matches, matches[1:]):
        if h1 != h0 + 1 or r1 != r0 + 1:
            chunks += 1
    return chunks


def meteor(hyp: str, ref: str, alpha: float = 0.9, beta: float = 3.0, gamma: float = 0.5,
           wordnet: Any = AUTO, penalty: bool = True) -> float:
    """Sentence METEOR of `hyp` against `ref` on the paper's 0-1 scale.

    Args:
        hyp: the system's response.
        ref: the reference response.
        alpha: weight of precision in Fmean (0.9: Lavie & Agarwal 2007, nltk's default).
        beta: exponent of the fragmentation penalty (3.0).
        gamma: weight of the fragmentation penalty (0.5).
        wordnet: AUTO (the database `load_wordnet()` finds), a reader, or None for no synonyms.
        penalty: False gives the paper's Eq. 8 (Fmean only, no fragmentation penalty).

    Returns:
        The score; 0.0 when either side is empty or nothing matches (nltk's convention).
    """
    hyp_words = [w.lower() for w in hyp.split()]
    ref_words = [w.lower() for w in ref.split()]
    matches = align(hyp_words, ref_words, wordnet)
    m = len(matches)
    try:  # the same operations, in the same order, as nltk's single_meteor_score
        precision = float(m) / len(hyp_words)
        recall = float(m) / len(ref_words)
        fmean = (precision * recall) / (alpha * precision + (1 - alpha) * recall)  # Eq. 8 at alpha=0.9
        frag_frac = float(count_chunks(matches)) / m
    except ZeroDivisionError:
        return 0.0
    if not penalty:
        return fmean
    return (1 - gamma * frag_frac ** beta) * fmean  # Lavie & Agarwal 2007, Eq. 3
