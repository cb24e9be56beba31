"""A small WordNet 3.0 reader for METEOR's synonym stage, written from the database files.

It answers what `nltk.translate.meteor_score` asks of `nltk.corpus.wordnet`: `synsets(word)` over
the four parts of speech, each form found by NLTK's `morphy` (exception lists, else one pass of the
detachment rules, keeping the forms the index knows), and each synset's lemma names. Semantics
follow `nltk.corpus.reader.wordnet.WordNetCorpusReader` (nltk 3.9/3.10) exactly.

Database format: Princeton's wndb(5WN) man page. `index.<pos>` lines are
`lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt synset_offset...`; `data.<pos>`
lines start with `synset_offset lex_filenum ss_type w_cnt(hex) [word lex_id]...` at byte
`synset_offset`; `<pos>.exc` lines are `inflected_form base_form...`.

Loading is lazy: an index file is read the first time its part of speech is asked for, a data file
the first time one of its synsets is, and each synset's lemma names are parsed once and cached.

Finding the database folder, exporting it for nltk and sharing one reader per folder live in
`evalkit/wordnet.py`, which re-exports the names here.
"""
from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import NamedTuple

from evalkit.errors import EvalkitError

POS_LIST = ("n", "v", "a", "r")  # nltk's POS_LIST: the order synsets(word) walks
_FILE_POS = {"n": "noun", "v": "verb", "a": "adj", "r": "adv", "s": "adj"}
REQUIRED_FILES = tuple(f"{kind}.{name}" for name in ("noun", "verb", "adj", "adv") for kind in ("index", "data")) + \
    tuple(f"{name}.exc" for name in ("noun", "verb", "adj", "adv"))

# morphy's detachment rules, nltk's WordNetCorpusReader.MORPHOLOGICAL_SUBSTITUTIONS (from WordNet's morph.c).
MORPHOLOGICAL_SUBSTITUTIONS = {
    "n": (("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"),
          ("shes", "sh"), ("men", "man"), ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}
MORPHOLOGICAL_SUBSTITUTIONS["s"] = MORPHOLOGICAL_SUBSTITUTIONS["a"]

_VERSION_RE = re.compile(rb"WordNet (\d+\+?|\d+\.\d+) Copyright")


class WordNetError(EvalkitError):
    """A WordNet database that is missing, incomplete or malformed; the message names the file."""


class Synset(NamedTuple):
    """One synset: its part of speech as the data file gives it ('s' for satellites), offset, lemma names."""

    pos: str
    offset: int
    names: tuple[str, ...]

    def lemma_names(self) -> list[str]:
        """Lemma names in database order, syntactic markers such as '(a)' removed (as nltk's)."""
        return list(self.names)


def _strip_marker(name: str) -> str:
    """'galore(ip)' -> 'galore': nltk's `(.*?)(\\([^()]*\\))?$` on a lemma of the data file."""
    if name.endswith(")"):
        i = name.rfind("(")
        if i >= 0 and ")" not in name[i + 1:-1]:
            return name[:i]
    return name


class WordNet:
    """Reader of one WordNet database folder (or zip) with nltk's `synsets` and `morphy` semantics.

    Args:
        root: a folder holding `index.*`, `data.*` and `*.exc`, or a zip holding them (any subfolder).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._zip_prefix: str | None = None  # folder of the files inside a zip; None for a folder
        if self.root.is_file() and zipfile.is_zipfile(self.root):
            with zipfile.ZipFile(self.root) as zf:
                names = set(zf.namelist())
            hits = sorted((n for n in names if n.endswith("index.noun")), key=len)
            self._zip_prefix = hits[0][: -len("index.noun")] if hits else ""
            missing = [n for n in REQUIRED_FILES if self._zip_prefix + n not in names]
        elif self.root.is_dir():
            missing = [n for n in REQUIRED_FILES if not (self.root / n).is_file()]
        else:
            raise WordNetError(f"{self.root}: not a WordNet folder or zip")
        if missing:
            raise WordNetError(f"{self.root}: not a WordNet database, missing {', '.join(missing)}")
        self._index: dict[str, dict[str, str]] = {}
        self._offsets: dict[tuple[str, str], tuple[int, ...]] = {}
        self._exceptions: dict[str, dict[str, list[str]]] = {}
        self._data: dict[str, bytes] = {}
        self._synsets: dict[tuple[str, int], Synset] = {}
        self._synonyms: dict[str, frozenset[str]] = {}

    def __repr__(self) -> str:
        return f"WordNet({str(self.root)!r})"

    def _read(self, name: str) -> bytes:
        """The bytes of one database file (each is read once: the callers cache what they parse)."""
        try:
            if self._zip_prefix is None:
                return (self.root / name).read_bytes()
            with zipfile.ZipFile(self.root) as zf:
                return zf.read(self._zip_prefix + name)
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise WordNetError(f"{self.root / name}: cannot read ({exc})") from None

    @property
    def version(self) -> str | None:
        """The version in data.adj's licence header ('3.0' for WordNet 3.0), None if absent."""
        match = _VERSION_RE.search(self._data_bytes("a")[:4096])
        return match.group(1).decode() if match else None

    # -- index and exception lists ----------------------------------------------------------
    def _index_of(self, pos: str) -> dict[str, str]:
        """lemma -> rest of its `index.<pos>` line; licence lines start with a space and are skipped."""
        pos = "a" if pos == "s" else pos
        index = self._index.get(pos)
        if index is None:
            text = self._read(f"index.{_FILE_POS[pos]}").decode("utf-8")
            index = {}
            for line in text.splitlines():
                if line and line[0] != " ":
                    lemma, _, rest = line.partition(" ")
                    index[lemma] = rest
            self._index[pos] = index
        return index

    def _exceptions_of(self, pos: str) -> dict[str, list[str]]:
        """inflected form -> base forms, from `<pos>.exc` (adjective satellites share adj.exc)."""
        pos = "a" if pos == "s" else pos
        exc = self._exceptions.get(pos)
        if exc is None:
            exc = {}
            for line in self._read(f"{_FILE_POS[pos]}.exc").decode("utf-8").splitlines():
                terms = line.split()
                if terms:
                    exc[terms[0]] = terms[1:]
            self._exceptions[pos] = exc
        return exc

    def _index_offsets(self, lemma: str, pos: str) -> tuple[int, ...]:
        """Synset offsets of `lemma` in `index.<pos>` (pos 'n', 'v', 'a' or 'r'), in the file's order."""
        key = (lemma, pos)
        offsets = self._offsets.get(key)
        if offsets is None:
            rest = self._index_of(pos).get(lemma)
            if rest is None:
                offsets = ()
            else:
                fields = rest.split()  # pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt offsets...
                try:
                    n_synsets, n_pointers = int(fields[1]), int(fields[2])
                    start = 3 + n_pointers + 2
                    offsets = tuple(int(f) for f in fields[start:start + n_synsets])
                except (IndexError, ValueError):
                    offsets = ()
                if len(offsets) != n_synsets or not offsets:
                    raise WordNetError(f"{self.root / ('index.' + _FILE_POS[pos])}: malformed line for {lemma!r}")
            self._offsets[key] = offsets
        return offsets

    # -- data ----------------------------------------------------------------------------------
    def _data_bytes(self, pos: str) -> bytes:
        pos = "a" if pos == "s" else pos
        data = self._data.get(pos)
        if data is None:
            data = self._data[pos] = self._read(f"data.{_FILE_POS[pos]}")
        return data

    def synset_at(self, pos: str, offset: int) -> Synset:
        """The synset at byte `offset` of `data.<pos>` (nltk's `synset_from_pos_and_offset`)."""
        key = ("a" if pos == "s" else pos, offset)
        synset = self._synsets.get(key)
        if synset is None:
            data = self._data_bytes(pos)
            end = data.find(b"\n", offset)
            line = data[offset: end if end >= 0 else len(data)].decode("utf-8")
            fields = line.split(None, 4)  # offset lex_filenum ss_type w_cnt "word lex_id ... pointers | gloss"
            try:
                if int(fields[0]) != offset or len(fields[0]) != 8:
                    raise ValueError
                n_words = int(fields[3], 16)
                words = fields[4].split(None, 2 * n_words)[: 2 * n_words: 2]
                if len(words) != n_words:
                    raise ValueError
                names = tuple(map(_strip_marker, words))
            except (IndexError, ValueError):
                where = self.root / f"data.{_FILE_POS[key[0]]}"
                raise WordNetError(f"{where}: no synset at offset {offset}") from None
            synset = self._synsets[key] = Synset(fields[2], offset, names)
        return synset

    # -- nltk's morphy and synsets ---------------------------------------------------------------
    def morphy(self, form: str, pos: str) -> list[str]:
        """Base forms of `form` as `pos` that the index holds, nltk's `_morphy(form, pos)`.

        The exception list decides when it lists the form; otherwise each detachment rule whose
        suffix matches is applied once. The form itself is tried first; duplicates are dropped.
        """
        index = self._index_of(pos)
        exceptions = self._exceptions_of(pos)
        if form in exceptions:
            forms = exceptions[form]
        else:
            forms = [form[: -len(old)] + new for old, new in MORPHOLOGICAL_SUBSTITUTIONS[pos] if form.endswith(old)]
        result: list[str] = []
        for candidate in [form, *forms]:
            if candidate in index and candidate not in result:
                result.append(candidate)
        return result

    def synsets(self, word: str, pos: str | None = None) -> list[Synset]:
        """All synsets of `word` (lowercased), as `nltk.corpus.wordnet.synsets(word, pos)`.

        Args:
            word: a surface form; morphy finds its base forms in each part of speech.
            pos: one of 'n', 'v', 'a', 'r', 's' (adjective satellites), or None for n, v, a, r.
        """
        word = word.lower()
        result = []
        for p in (POS_LIST if pos is None else (pos,)):
            if p not in MORPHOLOGICAL_SUBSTITUTIONS:
                raise ValueError(f"unknown WordNet part of speech {p!r}")
            for form in self.morphy(word, p):
                for offset in self._index_offsets(form, "a" if p == "s" else p):
                    synset = self.synset_at(p, offset)
                    if p != "s" or synset.pos == "s":
                        result.append(synset)
        return result

    def lemma_names(self, word: str, pos: str | None = None) -> list[str]:
        """Distinct lemma names of all synsets of `word`, in first-seen order."""
        return list(dict.fromkeys(name for synset in self.synsets(word, pos) for name in synset.names))

    def synonyms(self, word: str) -> frozenset[str]:
        """Cached set of the lemma names of every synset of `word` over all parts of speech."""
        found = self._synonyms.get(word)
        if found is None:
            found = self._synonyms[word] = frozenset(name for s in self.synsets(word) for name in s.names)
        return found
