"""Find database names (conditions, tests, medications) in free text with one compiled token trie.

Rules (each has a unit test in ``tests/test_evalkit_names.py``):

* **Words.** Text and names are lower-cased and split into words: runs of letters and digits, joined
  by in-word apostrophes (``don't``, ``crohn's``). Everything else separates words, so matches fall
  on word boundaries, and ``x-ray``, ``x ray`` and ``X-Ray`` are the same two words.
* **Plurals and possessives.** Each word is reduced to a key: a final ``'s`` is dropped (possessive),
  then Harman's S-stemmer (``-ies`` -> ``-y``; a final ``-s`` dropped except after ``s``, ``u``,
  ``i``), then a final ``-e`` is dropped, so ``rash``/``rashes`` and ``headache``/``headaches`` meet.
  Words of 3 letters or fewer are kept as they are (``gas``, ``ALS``). Names and text get the same keys.
* **Parenthetical aliases.** ``A (B)`` is found as ``A B`` (the full name), as ``A`` (the base) and
  as ``B`` (an alias): ``Alprazolam (Xanax)``, ``Depression screen (Depression screening)``. Several
  trailing groups give several aliases. A group inside a name (``Coagulation (bleeding) disorder``)
  gives the full name and the base (``coagulation disorder``), no alias. A group is *not* an alias
  when it is a qualifier or a label rather than a name: it holds ``;`` or ``,`` (a list of examples),
  starts with ``not``/``other than`` or ends with ``only``, is a database label (``Obsolete``,
  ``USP``), has fewer than 3 letters or digits (``I d``, ``ML``), or is a class of at most two words
  ending in condition/disorder/disease/infection/problem (``skin condition``, ``ear disorder``).
* **Longest match first.** The text is read left to right; at each word the longest name starting
  there wins and the scan resumes after it, so ``type 2 diabetes`` is one mention and not also
  ``diabetes``, and ``vaginal yeast infection`` is not also ``yeast infection``.
* **One owner per form.** When several entries share a form, a full name beats a base, which beats an
  alias; at equal rank, a form shared across categories (a name that is both a test and a condition)
  goes to the earliest category of the ``names`` mapping (conditions, then tests, then medications).
  A form still shared by several entries of one category is ambiguous and matches nothing. Each
  span of text thus names exactly one entry, and ``NameMatcher.dropped`` lists every shared form
  (``"shared"``: who kept it; ``"ambiguous"``: set aside) with all the entries that claimed it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_GROUP = re.compile(r"\(([^()]*)\)")
_TRAILING_GROUPS = re.compile(r"(?:\s*\([^()]*\))+\s*$")
LABELS = frozenset({"obsolete", "usp"})
CLASS_NOUNS = frozenset({"condition", "disorder", "disease", "infection", "problem"})
FULL, BASE, ALIAS = 0, 1, 2  # a form's rank: lower wins when entries share a form
_END = ""  # trie key of a node's entry; never a word key


def word_key(word: str) -> str:
    """The matching key of one lower-cased word: possessive, then plural, then final -e removed."""
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 3:  # S-stemmer, Harman 1991 (JASIS 42(1):7-15)
        if word.endswith("ies") and not word.endswith(("eies", "aies")):
            word = word[:-3] + "y"
        elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
        if len(word) > 3 and word.endswith("e"):
            word = word[:-1]
    return word


def words(text: str) -> list[tuple[str, int, int]]:
    """``(key, start, end)`` of every word of ``text``; ``text[start:end]`` is the word as written."""
    text = text.translate(_APOSTROPHES)  # one character for one: offsets stay valid
    return [(word_key(m.group().lower()), m.start(), m.end()) for m in _WORD.finditer(text)]


def _key(text: str) -> tuple[str, ...]:
    return tuple(k for k, _, _ in words(text))


def is_alias(group: str) -> bool:
    """Whether a trailing parenthetical names the entry (``Xanax``) rather than qualifies it."""
    low = " ".join(group.lower().split())
    keys = _key(low)
    if not keys or any(c in low for c in ";,") or low.startswith(("not ", "other than ")) or low.endswith(" only"):
        return False
    if low in LABELS or sum(ch.isalnum() for ch in low) < 3:
        return False
    return not (len(keys) <= 2 and low.split()[-1] in CLASS_NOUNS)


def name_forms(name: str) -> list[tuple[tuple[str, ...], int]]:
    """Word-key forms of one database name with their rank (``FULL``, ``BASE``, ``ALIAS``)."""
    forms = [(_key(name.replace("(", " ").replace(")", " ")), FULL), (_key(_GROUP.sub(" ", name)), BASE)]
    trailing = _TRAILING_GROUPS.search(name)
    if trailing:
        forms += [(_key(g), ALIAS) for g in _GROUP.findall(trailing.group()) if is_alias(g)]
    return [(k, rank) for k, rank in forms if k]


@dataclass(frozen=True)
class Mention:
    """One span of text that names a database entry."""

    name: str
    category: str
    start: int
    end: int


class NameMatcher:
    """All names of all categories in one word trie; ``find`` reads a text once, longest match first.

    Args:
        names: category -> database names; the order of categories settles cross-category forms.
    """

    def __init__(self, names: Mapping[str, Iterable[str]]):
        names = {k: list(v) for k, v in names.items()}
        self.categories = tuple(names)
        claims: dict[tuple[str, ...], list[tuple[int, int, str, str]]] = {}
        for c, category in enumerate(self.categories):
            for name in dict.fromkeys(names[category]):
                for key, rank in name_forms(name):
                    claims.setdefault(key, []).append((rank, c, category, name))
        self.dropped: list[dict] = []
        self.owners: dict[tuple[str, ...], tuple[str, str]] = {}  # form -> (category, name)
        for key, claimants in claims.items():
            owner = self._owner(key, claimants)
            if owner is not None:
                self.owners[key] = owner
        self.root: dict = {}  # word key -> child node; _END -> the entry a form ending here names
        for key, owner in self.owners.items():
            node = self.root
            for k in key:
                node = node.setdefault(k, {})
            node[_END] = owner

    def _owner(self, key: tuple[str, ...], owners: list) -> tuple[str, str] | None:
        """The entry that owns a form (None when ambiguous); every entry that loses it is listed."""
        ranked = sorted(set(owners))  # rank, then category order, then name
        best = [o for o in ranked if o[:2] == ranked[0][:2]]
        everyone = [list(e) for e in dict.fromkeys((category, name) for _, _, category, name in ranked)]
        form = " ".join(key)
        if len({name for *_, name in best}) > 1:
            self.dropped.append({"form": form, "reason": "ambiguous", "kept": None, "names": everyone})
            return None
        _, _, category, name = best[0]
        if any(n != name or c != category for _, _, c, n in ranked):
            self.dropped.append({"form": form, "reason": "shared", "kept": [category, name], "names": everyone})
        return category, name

    def find(self, text: str) -> list[Mention]:
        """Every mention in ``text``, left to right, longest first, never overlapping."""
        ws = words(text)
        found, i, n = [], 0, len(ws)
        while i < n:
            node, j, best = self.root, i, None
            while j < n:
                node = node.get(ws[j][0])
                if node is None:
                    break
                j += 1
                if _END in node:
                    best = j, node[_END]
            if best is None:
                i += 1
                continue
            j, (category, name) = best
            found.append(Mention(name, category, ws[i][1], ws[j - 1][2]))
            i = j
        return found

    def named(self, text: str) -> dict[str, list[str]]:
        """category -> the distinct names ``text`` mentions, in order of first mention."""
        out: dict[str, dict[str, None]] = {c: {} for c in self.categories}
        for m in self.find(text):
            out[m.category][m.name] = None
        return {c: list(v) for c, v in out.items()}
