"""The disease database loader: the real file, a written file read back, and every bad-file error."""
from __future__ import annotations

import ast
import csv

import pytest

from conftest import shared_file
from evalkit import EvalkitError
from evalkit.disease_db import COLUMNS, Condition, load_disease_db, write_disease_db

ROWS = [
    ("Panic disorder", ["Anxiety and nervousness", "Sharp chest pain"], ["Depression screen (Depression screening)"],
     ["Alprazolam (Xanax)", "Lorazepam"]),
    ("Athlete's foot", ["Itchy skin", 'Skin "rash"'], [], ["Clotrimazole Topical", "Terbinafine (Lamisil)"]),
    Condition("Migraine", ("Headache",), ("Magnetic resonance imaging (Mri)",), ("Sumatriptan (Imitrex)",),
              reason="A primary headache disorder,\nwith a newline and a \"quote\"."),
]


def test_real_database():
    path = shared_file("disease-database.csv")
    db = load_disease_db(path)
    with open(path, newline="", encoding="utf-8") as f:
        raw = list(csv.DictReader(f))
    assert len(db.conditions) == len(raw) == 796
    names = db.names()
    assert len(names["condition"]) == 796 and len(names["test"]) == 171 and len(names["medication"]) == 1289
    for cond, row in zip(db.conditions, raw):  # every list equals literal_eval of its cell
        assert cond.medications == tuple(ast.literal_eval(row["commonMedications"]))
        assert cond.tests == tuple(ast.literal_eval(row["TestsAndProcedures"]))
        assert cond.symptoms == tuple(ast.literal_eval(row["Symptom"]))
    assert db.condition("Panic disorder").medications[1] == "Alprazolam (Xanax)"
    assert "Athlete's foot" in names["condition"]  # the file's escaped "Athlete\'s foot"
    assert len(db.sha256) == 64


def test_write_then_load_round_trips(tmp_path):
    path = write_disease_db(tmp_path / "db.csv", ROWS)
    db = load_disease_db(path)
    expected = [Condition(r[0], *(tuple(v) for v in r[1:4]), *r[4:]) for r in ROWS]
    assert list(db.conditions) == expected
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert tuple(header) == COLUMNS
    # Written again from what was read, the file is byte-identical.
    assert write_disease_db(tmp_path / "again.csv", db.conditions).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("rows,problem", [
    ([("", [], [], [])], "empty"), ([("A", [], [], []), ("A", [], [], [])], "duplicate"),
    ([(" A", [], [], [])], "padded"), ([("A", [1], [], [])], "non-empty string"), ([("A", [], [""], [])], "non-empty"),
])
def test_writer_refuses_what_would_not_read_back(tmp_path, rows, problem):
    with pytest.raises(ValueError, match=problem):
        write_disease_db(tmp_path / "db.csv", rows)


HEADER = ",".join(COLUMNS)
GOOD = "0,Flu,\"['Fever']\",,\"['Rapid influenza test']\",\"['Oseltamivir (Tamiflu)']\""


@pytest.mark.parametrize("text,problem", [
    ("", ": empty file (expected the header"),
    (HEADER + "\n", ": no conditions (only a header)"),
    (HEADER.replace(",commonMedications", "") + "\n" + GOOD, ":1: missing column 'commonMedications'"),
    (HEADER + "\n" + GOOD + "\n" + GOOD.replace("Flu", "Cold").replace("\"['Fever']\"", "\"['Fever'\""),
     ":3: column 'Symptom' of 'Cold': malformed list"),
    (HEADER + "\n" + GOOD.replace("['Oseltamivir (Tamiflu)']", "__import__('os').system('true')"),
     ":2: column 'commonMedications' of 'Flu': malformed list"),
    (HEADER + "\n" + GOOD.replace("\"['Fever']\"", "\"{'Fever': 1}\""),
     ":2: column 'Symptom' of 'Flu': expected a list of strings"),
    (HEADER + "\n" + GOOD.replace("\"['Fever']\"", "\"[1, 2]\""), ":2: column 'Symptom' of 'Flu': expected a list"),
    (HEADER + "\n" + GOOD + ",extra", ":2: expected 6 fields like the header, got 7"),
    (HEADER + "\n" + GOOD.replace("0,", "zero,", 1), ":2: column 'idx' must be an integer, got 'zero'"),
    (HEADER + "\n" + GOOD.replace("Flu", "", 1), ":2: column 'disease' is empty"),
    (HEADER + "\n" + GOOD + "\n" + GOOD.replace("0,", "1,", 1), ":3: duplicate condition 'Flu' (first on line 2)"),
    (HEADER + "\n" + GOOD + "\n" + GOOD.replace("0,Flu", "1,FLU ", 1),
     ":3: duplicate condition 'FLU' (first on line 2 as 'Flu'; names are matched without case)"),
    (HEADER + "\n" + GOOD.replace("Flu", "!!!", 1), ":2: condition '!!!' has no letter or digit"),
    (HEADER + "\n" + GOOD + "\n1,\"Cold", ":3: not valid CSV"),
])
def test_bad_file_one_line_with_file_and_line(tmp_path, text, problem):
    path = tmp_path / "db.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EvalkitError) as info:
        load_disease_db(path)
    message = str(info.value)
    assert message.startswith(f"{path}{problem}"), message
    assert "\n" not in message


def test_multi_line_cell_keeps_line_numbers(tmp_path):
    row2 = GOOD.replace(",,", ",\"a reason\nover two lines\",", 1)
    bad = GOOD.replace("Flu", "Cold", 1).replace("['Fever']", "['Fever',,]")
    path = tmp_path / "db.csv"
    path.write_text(HEADER + "\n" + row2 + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(EvalkitError, match=r"db\.csv:4: column 'Symptom' of 'Cold'"):
        load_disease_db(path)


def test_not_utf8_and_missing_file(tmp_path):
    path = tmp_path / "db.csv"
    path.write_bytes((HEADER + "\n" + GOOD.replace("Flu", "Gr\u00fcnfieber") + "\n").encode("latin-1"))
    with pytest.raises(EvalkitError, match=r"db\.csv:2: not UTF-8 \(byte 0xfc\)"):
        load_disease_db(path)
    with pytest.raises(EvalkitError, match=r"nothing\.csv: cannot read: No such file or directory"):
        load_disease_db(tmp_path / "nothing.csv")
    with pytest.raises(EvalkitError, match="is a folder, not a file"):
        load_disease_db(tmp_path)


def test_utf8_bom_and_extra_columns_are_accepted(tmp_path):
    path = tmp_path / "db.csv"
    path.write_text("\ufeff" + HEADER + ",note\n" + GOOD + ",x\n", encoding="utf-8")
    db = load_disease_db(path)
    assert db.conditions == (Condition("Flu", ("Fever",), ("Rapid influenza test",), ("Oseltamivir (Tamiflu)",)),)
