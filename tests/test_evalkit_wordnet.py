"""The WordNet reader: a hand-made database in the wndb(5WN) format, discovery, and parity with nltk."""
from __future__ import annotations

import importlib
import zipfile
from pathlib import Path

import pytest

from _evalkit_util import genmedgpt_records, nltk_wordnet
from evalkit.porter import stem
from evalkit.wordnet import REQUIRED_FILES, WordNet, WordNetError, export_nltk_layout, find_wordnet, load_wordnet

wnmod = importlib.import_module("evalkit.wordnet")
HEADER = "  1 This is a hand-made WordNet database for tests.\n  2 \n"

# synsets per file: (key, lex_filenum, ss_type, words); pointers and glosses are kept minimal.
SYNSETS = {
    "noun": [("dog", "05", "n", ["dog", "domestic_dog", "Canis_familiaris"]), ("frump", "18", "n", ["frump", "dog"]),
             ("church", "06", "n", ["church", "church_building"]), ("goose", "05", "n", ["goose"])],
    "verb": [("chase", "38", "v", ["chase", "dog", "track"]), ("run", "38", "v", ["run"])],
    "adj": [("good", "00", "a", ["good(a)"]), ("glad", "00", "s", ["glad(p)", "happy"]), ("sick", "00", "a", ["sick", "ill"])],
    "adv": [("well", "02", "r", ["well"])],
}
# index entries: lemma -> keys of its synsets, per file.
INDEX = {
    "noun": {"church": ["church"], "church_building": ["church"], "dog": ["dog", "frump"], "goose": ["goose"]},
    "verb": {"chase": ["chase"], "dog": ["chase"], "run": ["run"]},
    "adj": {"glad": ["glad"], "good": ["good"], "happy": ["glad"], "ill": ["sick"], "sick": ["sick"]},
    "adv": {"well": ["well"]},
}
EXCEPTIONS = {"noun": "geese goose\n", "verb": "ran run\n", "adj": "better good well\n", "adv": "best well\n"}


def write_tiny_wordnet(folder: Path) -> dict[str, int]:
    """Write the database above; return each synset key's byte offset in its data file."""
    folder.mkdir(parents=True, exist_ok=True)
    offsets: dict[str, int] = {}
    pos_letter = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
    for name, synsets in SYNSETS.items():
        text = HEADER
        for key, lex, ss_type, words in synsets:
            offsets[key] = len(text.encode())
            lemmas = " ".join(f"{w} 0" for w in words)
            text += f"{offsets[key]:08d} {lex} {ss_type} {len(words):02x} {lemmas} 000 | a gloss; \"an example\"  \n"
        (folder / f"data.{name}").write_text(text)
        lines = [HEADER]
        for lemma, keys in sorted(INDEX[name].items()):
            ptrs = "1 @" if name == "noun" else "0"
            lines.append(f"{lemma} {pos_letter[name]} {len(keys)} {ptrs} {len(keys)} 0 "
                         + " ".join(f"{offsets[k]:08d}" for k in keys) + "  \n")
        (folder / f"index.{name}").write_text("".join(lines))
        (folder / f"{name}.exc").write_text(EXCEPTIONS[name])
    return offsets


@pytest.fixture
def tiny(tmp_path):
    offsets = write_tiny_wordnet(tmp_path / "dict")
    return WordNet(tmp_path / "dict"), offsets


def test_synsets_walk_pos_and_morphy(tiny):
    wn, off = tiny
    got = [(s.pos, s.offset, s.lemma_names()) for s in wn.synsets("Dogs")]
    assert got == [("n", off["dog"], ["dog", "domestic_dog", "Canis_familiaris"]),
                   ("n", off["frump"], ["frump", "dog"]),
                   ("v", off["chase"], ["chase", "dog", "track"])]
    assert [s.offset for s in wn.synsets("geese")] == [off["goose"]]          # noun.exc
    assert [s.offset for s in wn.synsets("ran")] == [off["run"]]              # verb.exc
    assert [s.offset for s in wn.synsets("better")] == [off["good"]]          # adj.exc: good, well (no adj 'well')
    assert [s.offset for s in wn.synsets("churches")] == [off["church"]]      # -ches -> -ch
    assert wn.synsets("cats") == []


def test_morphy_rules_and_exceptions(tiny):
    wn, _ = tiny
    assert wn.morphy("dogs", "n") == ["dog"]
    assert wn.morphy("dog", "n") == ["dog"]
    assert wn.morphy("geese", "n") == ["goose"]
    assert wn.morphy("dogs", "v") == ["dog"]
    assert wn.morphy("chased", "v") == ["chase"]    # -ed -> -e; -ed -> '' gives 'chas', not in the index
    assert wn.morphy("better", "a") == ["good"]
    assert wn.morphy("best", "r") == ["well"]


def test_satellites_markers_and_synonyms(tiny):
    wn, off = tiny
    assert [(s.pos, s.names) for s in wn.synsets("glad", pos="a")] == [("s", ("glad", "happy"))]  # '(p)' removed
    assert [s.offset for s in wn.synsets("glad", pos="s")] == [off["glad"]]
    assert wn.synsets("sick", pos="s") == []                                   # a head adjective, not a satellite
    assert wn.synonyms("sick") == frozenset({"sick", "ill"})
    assert wn.lemma_names("dog") == ["dog", "domestic_dog", "Canis_familiaris", "frump", "chase", "track"]
    with pytest.raises(ValueError, match="part of speech"):
        wn.synsets("dog", pos="x")


def test_marker_stripping_follows_nltk_regex():
    assert wnmod._strip_marker("galore(ip)") == "galore"
    assert wnmod._strip_marker("a(b)c") == "a(b)c"
    assert wnmod._strip_marker("x(a(b)") == "x(a"
    assert wnmod._strip_marker("plain") == "plain"


def test_zip_database_with_subfolder(tmp_path):
    offsets = write_tiny_wordnet(tmp_path / "src")
    archive = tmp_path / "wordnet.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in REQUIRED_FILES:
            zf.write(tmp_path / "src" / name, f"wordnet/{name}")
    wn = WordNet(archive)
    assert [s.offset for s in wn.synsets("dogs", pos="n")] == [offsets["dog"], offsets["frump"]]
    assert wn.synonyms("sick") == frozenset({"sick", "ill"})


def test_bad_databases_name_the_problem(tmp_path):
    with pytest.raises(WordNetError, match="missing index.noun"):
        WordNet(tmp_path)
    write_tiny_wordnet(tmp_path / "db")
    (tmp_path / "db" / "data.noun").write_text(HEADER)  # offsets now point past the end
    with pytest.raises(WordNetError, match=r"data\.noun: no synset at offset"):
        WordNet(tmp_path / "db").synsets("dog")


def test_export_for_nltk_adds_lexnames(tmp_path):
    write_tiny_wordnet(tmp_path / "src")
    out = export_nltk_layout(tmp_path / "out", tmp_path / "src")
    lines = (out / "lexnames").read_text().splitlines()
    assert len(lines) == 45 and lines[0] == "00\tadj.all\t3" and lines[44] == "44\tadj.ppl\t3"
    assert all((out / name).read_bytes() == (tmp_path / "src" / name).read_bytes() for name in REQUIRED_FILES)
    with pytest.raises(WordNetError, match="no WordNet database"):
        export_nltk_layout(tmp_path / "out2", tmp_path / "empty")


def test_discovery_order(tmp_path, monkeypatch):
    write_tiny_wordnet(tmp_path / "mine" / "dict")
    monkeypatch.setenv("WORDNET_DIR", str(tmp_path / "mine"))                 # its dict/ subfolder is accepted
    assert find_wordnet() == tmp_path / "mine" / "dict"
    monkeypatch.setenv("WORDNET_DIR", str(tmp_path / "nothing"))
    with pytest.raises(WordNetError, match="WORDNET_DIR"):
        find_wordnet()
    monkeypatch.delenv("WORDNET_DIR")
    monkeypatch.setattr(wnmod, "DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.setattr(wnmod, "_nltk_data_paths", lambda: [tmp_path / "nltk_data"])
    assert find_wordnet() is None and load_wordnet() is None
    write_tiny_wordnet(tmp_path / "nltk_data" / "corpora" / "wordnet")
    assert find_wordnet() == tmp_path / "nltk_data" / "corpora" / "wordnet"


def test_nltk_data_paths_follow_nltk(monkeypatch, tmp_path):
    data = pytest.importorskip("nltk.data")
    monkeypatch.setenv("NLTK_DATA", str(tmp_path))
    ours = [str(p) for p in wnmod._nltk_data_paths()]
    assert ours[0] == str(tmp_path)
    defaults = [p for p in data.path if "nltk_wordnet" not in str(p)]  # minus folders these tests add
    assert set(defaults) <= set(ours)


# -- parity with nltk's reader on the real WordNet 3.0 ---------------------------------------------
@pytest.fixture(scope="module")
def reference_wordnet(tmp_path_factory):
    return nltk_wordnet(tmp_path_factory.mktemp("nltk_wordnet"))


def test_real_wordnet_hand_vectors():
    wn = load_wordnet()
    if wn is None:
        pytest.skip("WordNet 3.0 not found (install wordnet-base or set WORDNET_DIR)")
    assert wn.version == "3.0"
    dog = wn.synsets("dogs")[0]
    assert (dog.pos, dog.offset, dog.names) == ("n", 2084071, ("dog", "domestic_dog", "Canis_familiaris"))
    assert {"doctor", "doc", "medico", "MD", "Dr."} <= wn.synonyms("physician")
    assert "ill" in wn.synonyms("sick")


@pytest.mark.slow
def test_parity_with_nltk_on_dataset_words(reference_wordnet):
    words: set[str] = set()
    for record in genmedgpt_records():
        tokens = (record["input"] + " " + record["output"]).lower().split()
        words.update(tokens)
        words.update(stem(t) for t in tokens)  # METEOR looks up stems
    ours = load_wordnet()
    for pos in wnmod.POS_LIST:
        words.update(list(ours._exceptions_of(pos))[::5])
    words = sorted(words)
    assert len(words) > 12_000

    def view(synsets):
        return [(s.pos(), s.offset(), s.lemma_names()) for s in synsets]

    bad = [w for w in words if view(reference_wordnet.synsets(w)) != [(s.pos, s.offset, s.lemma_names()) for s in ours.synsets(w)]]
    assert bad == []
    for pos in ("n", "v", "a", "r", "s"):
        bad = [w for w in words[::9] if view(reference_wordnet.synsets(w, pos)) != [(s.pos, s.offset, s.lemma_names()) for s in ours.synsets(w, pos)]]
        assert bad == [], pos
