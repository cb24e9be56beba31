"""Read and write the disease database GenMedGPT-5k was generated from (ChatDoctor's ``format_dataset.csv``).

One row per condition: ``idx, disease, Symptom, reason, TestsAndProcedures, commonMedications``.
``Symptom``, ``TestsAndProcedures`` and ``commonMedications`` hold Python-literal lists of strings
(``['Lorazepam', 'Alprazolam (Xanax)']``), parsed with ``ast.literal_eval`` (literals only, never
``eval``). The ``disease`` column of the original file escapes apostrophes (``Athlete\\'s foot``), as
the lists do; the loader removes that backslash so names read as the lists do. Extra columns are
ignored. Any problem stops loading with one line naming the file and line (``EvalkitError``).

ChatDoctor's file (Apache-2.0) ships with the package, gzip-compressed: ``EMBEDDED_DB`` (``evalkit/data/``,
with its licence and ``ATTRIBUTION.md``); decompressed, its sha256 is ``CHATDOCTOR_DB_SHA256``, the public
file's. The pipeline unpacks it for the grounding stage's ``--db chatdoctor`` (``pipeline/databases.py``).
"""
from __future__ import annotations

import ast
import csv
import hashlib
import io
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from evalkit.errors import EvalkitError
from evalkit.records import read_input

EMBEDDED_DB = Path(__file__).with_name("data") / "disease-database.csv.gz"  # format_dataset.csv, gzipped
CHATDOCTOR_DB_SHA256 = "d1fdcdd2c20fb80e446af788aef92d470595aa51c88743af71ce8c0f2a5b9e4b"  # the public file's
COLUMNS = ("idx", "disease", "Symptom", "reason", "TestsAndProcedures", "commonMedications")
LIST_COLUMNS = ("Symptom", "TestsAndProcedures", "commonMedications")


class Condition(NamedTuple):
    """One database row. A plain ``(name, symptoms, tests, medications)`` tuple converts with ``Condition(*t)``."""

    name: str
    symptoms: tuple[str, ...]
    tests: tuple[str, ...]
    medications: tuple[str, ...]
    reason: str = ""


class DiseaseDB(NamedTuple):
    """All conditions of one database file, in file order, and the file's sha256."""

    path: str
    conditions: tuple[Condition, ...]
    sha256: str = ""

    def names(self) -> dict[str, list[str]]:
        """``{"condition", "test", "medication"}`` -> distinct names in file order (the matcher's input)."""
        tests = dict.fromkeys(t for c in self.conditions for t in c.tests)
        meds = dict.fromkeys(m for c in self.conditions for m in c.medications)
        return {"condition": [c.name for c in self.conditions], "test": list(tests), "medication": list(meds)}

    def condition(self, name: str) -> Condition:
        """The row of condition ``name`` (KeyError when absent)."""
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(name)


def load_disease_db(path: str | Path) -> DiseaseDB:
    """Parse and check a database CSV.

    Raises:
        EvalkitError: ``"<file>:<line>: <problem>"`` for a missing column, a row with the wrong number
            of fields, a non-integer ``idx``, an empty or duplicate condition name, or a list column
            that is not a Python-literal list of strings; ``"<file>: <problem>"`` when the file cannot
            be read, is not UTF-8 (with the line of the first bad byte) or holds no condition.
    """
    path = str(path)
    raw = read_input(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise EvalkitError.at(path, line, f"not UTF-8 (byte 0x{raw[e.start]:02x}); save the file as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise EvalkitError.at(path, None, "empty file (expected the header " + ",".join(COLUMNS) + ")")
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise EvalkitError.at(path, 1, f"missing column {missing[0]!r} (the header must hold {', '.join(COLUMNS)})")
        col = {c: header.index(c) for c in COLUMNS}
        conditions, seen = [], {}
        line = reader.line_num + 1
        for fields in reader:
            if fields:
                conditions.append(_parse_row(path, line, fields, header, col, seen))
            line = reader.line_num + 1
    except csv.Error as e:
        raise EvalkitError.at(path, reader.line_num, f"not valid CSV ({e})") from None
    if not conditions:
        raise EvalkitError.at(path, None, "no conditions (only a header)")
    return DiseaseDB(path, tuple(conditions), hashlib.sha256(raw).hexdigest())


def _parse_row(path: str, line: int, fields: list[str], header: list[str], col: dict, seen: dict) -> Condition:
    if len(fields) != len(header):
        raise EvalkitError.at(path, line, f"expected {len(header)} fields like the header, got {len(fields)}")
    try:
        int(fields[col["idx"]])
    except ValueError:
        raise EvalkitError.at(path, line, f"column 'idx' must be an integer, got {fields[col['idx']]!r}") from None
    name = fields[col["disease"]].replace("\\'", "'").strip()
    if not name:
        raise EvalkitError.at(path, line, "column 'disease' is empty")
    if not any(ch.isalnum() for ch in name):
        raise EvalkitError.at(path, line, f"condition {name!r} has no letter or digit, so no answer can name it")
    key = " ".join(name.casefold().split())  # names are matched without case: two spellings are one condition
    if key in seen:
        first, line0 = seen[key]
        same = "" if first == name else f" as {first!r}; names are matched without case"
        raise EvalkitError.at(path, line, f"duplicate condition {name!r} (first on line {line0}{same})")
    seen[key] = (name, line)
    lists = [_parse_list(path, line, c, fields[col[c]], name) for c in LIST_COLUMNS]
    return Condition(name, *lists, reason=fields[col["reason"]])


def _parse_list(path: str, line: int, column: str, text: str, name: str) -> tuple[str, ...]:
    where = f"column {column!r} of {name!r}"
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise EvalkitError.at(path, line, f"{where}: malformed list ({type(e).__name__}: {_brief(text)})") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EvalkitError.at(path, line, f"{where}: expected a list of strings, got {_brief(text)}")
    return tuple(v.strip() for v in value if v.strip())


def _brief(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


def write_disease_db(path: str | Path, conditions: Iterable[Condition | Sequence]) -> Path:
    """Write conditions as a database CSV that ``load_disease_db`` reads back unchanged.

    Args:
        path: the file to write (UTF-8, the header ``COLUMNS``, ``idx`` counting from 0).
        conditions: ``Condition`` rows or ``(name, symptoms, tests, medications[, reason])`` tuples.

    Raises:
        ValueError: for an empty or duplicate name, or a name or list item that is not a non-empty
            string without surrounding spaces (it would not read back unchanged).
    """
    rows, seen = [], set()
    for i, item in enumerate(conditions):
        c = Condition(item[0], *(tuple(v) for v in item[1:4]), *item[4:])
        if not _clean(c.name) or c.name in seen:
            raise ValueError(f"condition {i}: name {c.name!r} is empty, padded, not a string or a duplicate")
        if not all(_clean(v) for field in (c.symptoms, c.tests, c.medications) for v in field):
            raise ValueError(f"condition {c.name!r}: each symptom, test and medication must be a non-empty "
                             "string without surrounding spaces")
        seen.add(c.name)
        rows.append([i, c.name, repr(list(c.symptoms)), c.reason, repr(list(c.tests)), repr(list(c.medications))])
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def _clean(value: object) -> bool:
    return isinstance(value, str) and bool(value) and value == value.strip()
