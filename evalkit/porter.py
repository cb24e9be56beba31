"""The Porter stemmer (Porter 1980), written here to equal `nltk.stem.porter.PorterStemmer`.

ROUGE with `use_stemmer=True` (rouge_score's `DefaultTokenizer`) and METEOR's stem stage
(`nltk.translate.meteor_score`) both call `nltk.stem.porter.PorterStemmer()` in its default mode,
`NLTK_EXTENSIONS`. That mode is the default here too; `MARTIN_EXTENSIONS` and `ORIGINAL_ALGORITHM`
are the other two modes of NLTK's class and are reproduced as well. Every rule, including NLTK's
quirks (its rule-list semantics: the first rule whose suffix matches decides, even when its
condition fails), follows NLTK's source so that the stems are identical, word for word.

Stems are cached per stemmer (`functools.lru_cache`): a corpus repeats its words, so scoring a
data set stems each distinct word once.
"""
from __future__ import annotations

import functools
from typing import Callable

NLTK_EXTENSIONS = "NLTK_EXTENSIONS"
MARTIN_EXTENSIONS = "MARTIN_EXTENSIONS"
ORIGINAL_ALGORITHM = "ORIGINAL_ALGORITHM"
MODES = (NLTK_EXTENSIONS, MARTIN_EXTENSIONS, ORIGINAL_ALGORITHM)

_VOWELS = frozenset("aeiou")

# NLTK_EXTENSIONS only: irregular forms mapped straight to their stem (nltk/stem/porter.py).
_IRREGULAR = {
    "sky": ("sky", "skies"), "die": ("dying",), "lie": ("lying",), "tie": ("tying",),
    "news": ("news",), "inning": ("innings", "inning"), "outing": ("outings", "outing"),
    "canning": ("cannings", "canning"), "howe": ("howe",), "proceed": ("proceed",),
    "exceed": ("exceed",), "succeed": ("succeed",),
}
_POOL = {form: stem for stem, forms in _IRREGULAR.items() for form in forms}

Rule = tuple[str, str, "Callable[[str], bool] | None"]


def _consonant_flags(word: str) -> list[bool]:
    """True where `word[i]` is a consonant: not a vowel, and `y` only after a vowel or at the start."""
    flags: list[bool] = []
    prev = False
    for i, ch in enumerate(word):
        if ch in _VOWELS:
            prev = False
        elif ch == "y":
            prev = True if i == 0 else not prev
        else:
            prev = True
        flags.append(prev)
    return flags


def _measure(stem: str) -> int:
    """Porter's m in [C](VC){m}[V]: the number of vowel-to-consonant transitions."""
    flags = _consonant_flags(stem)
    return sum(1 for i in range(1, len(flags)) if flags[i] and not flags[i - 1])


def _positive_measure(stem: str) -> bool:
    return _measure(stem) > 0


def _measure_gt_1(stem: str) -> bool:
    return _measure(stem) > 1


def _contains_vowel(stem: str) -> bool:
    """Condition *v*: the stem contains a vowel."""
    return not all(_consonant_flags(stem))


def _ends_double_consonant(word: str) -> bool:
    """Condition *d: the word ends with two equal consonants."""
    return len(word) >= 2 and word[-1] == word[-2] and _consonant_flags(word)[-1]


def _apply_rule_list(word: str, rules: list[Rule], ends_double: Callable[[str], bool] = _ends_double_consonant) -> str:
    """Apply the first rule whose suffix matches; if its condition fails, stop (NLTK's semantics).

    A rule is (suffix, replacement, condition on the stem or None). The pseudo-suffix "*d" matches
    a word ending in a double consonant; like NLTK, a literal "*d" ending also matches.
    """
    for suffix, replacement, condition in rules:
        if suffix == "*d" and ends_double(word):
            stem = word[:-2]
            return stem + replacement if condition is None or condition(stem) else word
        if word.endswith(suffix):
            stem = word[: len(word) - len(suffix)]
            return stem + replacement if condition is None or condition(stem) else word
    return word


def _ion_condition(stem: str) -> bool:
    return _measure(stem) > 1 and stem[-1] in "st"


_pm, _g1 = _positive_measure, _measure_gt_1
_STEP1A: list[Rule] = [("sses", "ss", None), ("ies", "i", None), ("ss", "ss", None), ("s", "", None)]
_STEP2_HEAD: list[Rule] = [("ational", "ate", _pm), ("tional", "tion", _pm), ("enci", "ence", _pm),
                           ("anci", "ance", _pm), ("izer", "ize", _pm)]
_STEP2_TAIL: list[Rule] = [
    ("alli", "al", _pm), ("entli", "ent", _pm), ("eli", "e", _pm), ("ousli", "ous", _pm), ("ization", "ize", _pm),
    ("ation", "ate", _pm), ("ator", "ate", _pm), ("alism", "al", _pm), ("iveness", "ive", _pm),
    ("fulness", "ful", _pm), ("ousness", "ous", _pm), ("aliti", "al", _pm), ("iviti", "ive", _pm),
    ("biliti", "ble", _pm),
]
_STEP3: list[Rule] = [("icate", "ic", _pm), ("ative", "", _pm), ("alize", "al", _pm), ("iciti", "ic", _pm),
                      ("ical", "ic", _pm), ("ful", "", _pm), ("ness", "", _pm)]
_STEP4: list[Rule] = [
    ("al", "", _g1), ("ance", "", _g1), ("ence", "", _g1), ("er", "", _g1), ("ic", "", _g1), ("able", "", _g1),
    ("ible", "", _g1), ("ant", "", _g1), ("ement", "", _g1), ("ment", "", _g1), ("ent", "", _g1),
    ("ion", "", _ion_condition), ("ou", "", _g1), ("ism", "", _g1), ("ate", "", _g1), ("iti", "", _g1),
    ("ous", "", _g1), ("ive", "", _g1), ("ize", "", _g1),
]


class PorterStemmer:
    """Porter's suffix-stripping stemmer, equal to `nltk.stem.porter.PorterStemmer(mode)`.

    Args:
        mode: `"NLTK_EXTENSIONS"` (NLTK's default, used by rouge_score and nltk's METEOR),
            `"MARTIN_EXTENSIONS"` or `"ORIGINAL_ALGORITHM"`.
        cache_size: entries of the per-instance stem cache (`functools.lru_cache`).
    """

    NLTK_EXTENSIONS = NLTK_EXTENSIONS
    MARTIN_EXTENSIONS = MARTIN_EXTENSIONS
    ORIGINAL_ALGORITHM = ORIGINAL_ALGORITHM

    def __init__(self, mode: str = NLTK_EXTENSIONS, cache_size: int = 1 << 18) -> None:
        if mode not in MODES:
            raise ValueError(f"PorterStemmer mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self._nltk = mode == NLTK_EXTENSIONS
        self._original = mode == ORIGINAL_ALGORITHM
        self._pool = _POOL if self._nltk else {}
        # Step 2's rules in NLTK's order; the original paper has ABLI -> ABLE where later versions have BLI -> BLE.
        bli: Rule = ("abli", "able", _pm) if self._original else ("bli", "ble", _pm)
        self._step2_rules = [*_STEP2_HEAD, bli, *_STEP2_TAIL]
        if self._nltk:
            self._step2_rules.append(("fulli", "ful", _pm))
        self.stem = functools.lru_cache(maxsize=cache_size)(self._stem)  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"PorterStemmer(mode={self.mode!r})"

    def __reduce__(self):  # pickles (e.g. for multiprocessing) as its mode; the cache is rebuilt
        return (PorterStemmer, (self.mode,))

    def stem(self, word: str) -> str:  # replaced per instance by the cached `_stem` in __init__
        """Stem of `word` (lowercased first, as NLTK's `stem(word, to_lowercase=True)`)."""
        return self._stem(word)

    def _stem(self, word: str) -> str:
        stem = word.lower()
        if self._nltk and stem in self._pool:
            return self._pool[stem]
        if not self._original and len(word) <= 2:  # NLTK tests the length before lowercasing
            return stem
        for step in (self._step1a, self._step1b, self._step1c, self._step2, self._step3,
                     self._step4, self._step5a, self._step5b):
            stem = step(stem)
        return stem

    # -- conditions that depend on the mode ------------------------------------------------------
    def _ends_cvc(self, word: str) -> bool:
        """Condition *o: ends consonant-vowel-consonant, the last not w, x or y (NLTK: also a 2-letter vc)."""
        flags = _consonant_flags(word)
        if len(word) >= 3 and flags[-3] and not flags[-2] and flags[-1] and word[-1] not in "wxy":
            return True
        return self._nltk and len(word) == 2 and not flags[0] and flags[1]

    # -- the steps of Porter (1980), with NLTK's extensions --------------------------------------
    def _step1a(self, word: str) -> str:
        """SSES -> SS, IES -> I, SS -> SS, S -> '' (NLTK: a 4-letter -ies -> -ie, 'dies' -> 'die')."""
        if self._nltk and len(word) == 4 and word.endswith("ies"):
            return word[:-3] + "ie"
        return _apply_rule_list(word, _STEP1A)

    def _step1b(self, word: str) -> str:
        """(m>0) EED -> EE; (*v*) ED -> ''; (*v*) ING -> ''; then AT/BL/IZ -> +E, undouble, or (m=1 and *o) +E."""
        if self._nltk and word.endswith("ied"):
            return word[:-3] + ("ie" if len(word) == 4 else "i")
        if word.endswith("eed"):
            stem = word[:-3]
            return stem + "ee" if _measure(stem) > 0 else word
        for suffix in ("ed", "ing"):
            if word.endswith(suffix):
                stem = word[: -len(suffix)]
                if _contains_vowel(stem):
                    break
        else:
            return word
        last = stem[-1]
        return _apply_rule_list(stem, [
            ("at", "ate", None), ("bl", "ble", None), ("iz", "ize", None),
            ("*d", last, lambda _: last not in "lsz"),
            ("", "e", lambda s: _measure(s) == 1 and self._ends_cvc(s)),
        ])

    def _step1c(self, word: str) -> str:
        """Y -> I: original (*v*) condition; NLTK: only after a consonant that is not the whole stem."""
        if self._nltk:
            condition = lambda s: len(s) > 1 and _consonant_flags(s)[-1]  # noqa: E731
        else:
            condition = _contains_vowel
        return _apply_rule_list(word, [("y", "i", condition)])

    def _step2(self, word: str) -> str:
        """(m>0) double suffixes to single ones: ATIONAL -> ATE, ... BILITI -> BLE (+ NLTK/Martin's additions)."""
        if self._nltk and word.endswith("alli") and _positive_measure(word[:-4]):
            return self._step2(word[:-4] + "al")  # NLTK: ALLI -> AL first, then step 2 again
        if word.endswith("logi") and not self._original:  # no other step-2 suffix ends in -gi
            # LOGI -> LOG: NLTK keeps the 'l' with the stem it measures, Martin's versions do not
            return word[:-1] if _positive_measure(word[:-3] if self._nltk else word[:-4]) else word
        return _apply_rule_list(word, self._step2_rules)

    def _step3(self, word: str) -> str:
        """(m>0) ICATE -> IC, ATIVE -> '', ALIZE -> AL, ICITI -> IC, ICAL -> IC, FUL -> '', NESS -> ''."""
        return _apply_rule_list(word, _STEP3)

    def _step4(self, word: str) -> str:
        """(m>1) remove AL, ANCE, ENCE, ER, IC, ABLE, ... IZE; (m>1 and *S or *T) ION."""
        return _apply_rule_list(word, _STEP4)

    def _step5a(self, word: str) -> str:
        """(m>1) E -> ''; (m=1 and not *o) E -> ''."""
        if word.endswith("e"):
            stem = word[:-1]
            m = _measure(stem)
            if m > 1 or (m == 1 and not self._ends_cvc(stem)):
                return stem
        return word

    def _step5b(self, word: str) -> str:
        """(m>1 and *d and *L) -> single letter: 'controll' -> 'control'."""
        return _apply_rule_list(word, [("ll", "l", lambda _: _measure(word[:-1]) > 1)])


_DEFAULT = PorterStemmer()


def stem(word: str) -> str:
    """Stem `word` with the shared default (NLTK_EXTENSIONS) stemmer."""
    return _DEFAULT.stem(word)
