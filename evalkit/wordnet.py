"""WordNet for METEOR's synonym stage: finding the database, exporting it for nltk, one shared reader.

The reader itself (`WordNet`, nltk's `synsets` and `morphy` semantics over Princeton's database
files) is in `evalkit/wordnet_reader.py`; its public names are re-exported here, so
`from evalkit.wordnet import WordNet, WordNetError, load_wordnet` is the one import callers need.

The folder is found in this order: `$WORDNET_DIR` (a folder, its `dict/` subfolder, or a zip),
Debian's `/usr/share/wordnet` (packages `wordnet-base` and `wordnet-sense-index`), then NLTK's data
folders (`corpora/wordnet/` or `corpora/wordnet.zip` under `$NLTK_DATA`, `~/nltk_data`, ...),
searched without importing nltk.
"""
from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path

from evalkit.wordnet_reader import (MORPHOLOGICAL_SUBSTITUTIONS, POS_LIST, REQUIRED_FILES, Synset,  # noqa: F401
                                    WordNet, WordNetError, _strip_marker)

DEBIAN_DIR = Path("/usr/share/wordnet")  # Debian/Ubuntu packages wordnet-base + wordnet-sense-index


def _nltk_data_paths() -> list[Path]:
    """nltk.data.path's default folders, computed here so that nltk need not be imported."""
    paths = [os.path.expanduser(d) for d in os.environ.get("NLTK_DATA", "").split(os.pathsep) if d]
    if os.path.expanduser("~/") != "~/":
        paths.append(os.path.expanduser("~/nltk_data"))
    if sys.platform.startswith("win"):
        if "APPDATA" in os.environ:
            paths.append(os.path.join(os.environ["APPDATA"], "nltk_data"))
        paths += [r"C:\nltk_data", r"D:\nltk_data", r"E:\nltk_data"]
    paths += [os.path.join(sys.prefix, "nltk_data"), os.path.join(sys.prefix, "share", "nltk_data"),
              os.path.join(sys.prefix, "lib", "nltk_data")]
    if not sys.platform.startswith("win"):
        paths += ["/usr/share/nltk_data", "/usr/local/share/nltk_data", "/usr/lib/nltk_data",
                  "/usr/local/lib/nltk_data"]
    return [Path(p) for p in paths]


def _is_database(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in REQUIRED_FILES)


def find_wordnet() -> Path | None:
    """The WordNet folder or zip to use, or None. `$WORDNET_DIR`, when set, must be valid.

    Raises:
        WordNetError: `$WORDNET_DIR` is set but holds no WordNet database.
    """
    explicit = os.environ.get("WORDNET_DIR")
    if explicit:
        path = Path(explicit).expanduser()
        for candidate in (path, path / "dict"):
            if _is_database(candidate):
                return candidate
        if path.is_file() and zipfile.is_zipfile(path):
            return path
        raise WordNetError(f"{path}: WORDNET_DIR holds no WordNet database (needs {', '.join(REQUIRED_FILES)})")
    if _is_database(DEBIAN_DIR):
        return DEBIAN_DIR
    for base in _nltk_data_paths():
        folder = base / "corpora" / "wordnet"
        if _is_database(folder):
            return folder
        archive = base / "corpora" / "wordnet.zip"
        if archive.is_file() and zipfile.is_zipfile(archive):
            return archive
    return None


# lexnames(5WN): lexicographer file names by number. Debian's wordnet-base leaves this file out;
# nltk's WordNetCorpusReader needs it (this reader does not).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


def export_nltk_layout(dest: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Copy a WordNet folder to `dest` with the files nltk's `WordNetCorpusReader(dest, None)` opens.

    Used to run nltk's METEOR (a reference for tests and benchmarks) on Debian's files: it adds
    `lexnames` when absent. Files are copied, not linked, since nltk refuses links leaving its data
    roots; `dest` must also be in `nltk.data.path` for nltk to open it.

    Raises:
        WordNetError: no WordNet folder was found or given.
    """
    src = Path(source) if source is not None else find_wordnet()
    if src is None or not _is_database(src):
        raise WordNetError(f"{src or 'WordNet'}: no WordNet database folder to export "
                           "(install wordnet-base or set WORDNET_DIR)")
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED_FILES + ("lexnames",):
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    if not (out / "lexnames").is_file():
        kinds = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
        (out / "lexnames").write_text("".join(f"{i:02d}\t{name}\t{kinds[name.split('.')[0]]}\n"
                                              for i, name in enumerate(LEXNAMES)))
    return out


_LOADED: dict[Path, WordNet] = {}


def load_wordnet(path: str | os.PathLike | None = None) -> WordNet | None:
    """The shared reader of `path` (default: `find_wordnet()`), or None when no WordNet is found.

    Readers are cached per path, so every caller shares one set of caches.
    """
    found = Path(path) if path is not None else find_wordnet()
    if found is None:
        return None
    key = found.resolve()
    if key not in _LOADED:
        _LOADED[key] = WordNet(found)
    return _LOADED[key]
