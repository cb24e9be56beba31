"""The embedded ChatDoctor files: byte for byte the public files, offline by default, download by name."""
from __future__ import annotations

import gzip
import hashlib
import socket
import tomllib
from pathlib import Path

import pytest

from conftest import REPO_ROOT, shared_file
from evalkit import load_disease_db
from evalkit import disease_db
from lora.finetune import records as rec_io
from pipeline import databases

EMBEDDED = [  # (embedded file, the shared public file, its known sha256)
    (rec_io.GENMEDGPT_EMBEDDED, "genmedgpt-5k.json", rec_io.GENMEDGPT_SHA256),
    (disease_db.EMBEDDED_DB, "disease-database.csv", databases.DISEASE_DB_SHA256),
]


@pytest.fixture
def offline(monkeypatch):
    """No network: every socket connection fails, as on an air-gapped machine."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.parametrize("embedded, public, sha256", EMBEDDED, ids=["genmedgpt-5k", "disease-db"])
def test_embedded_equals_the_public_file(embedded, public, sha256):
    data = gzip.decompress(embedded.read_bytes())
    assert hashlib.sha256(data).hexdigest() == sha256
    assert data == shared_file(public).read_bytes()
    assert hashlib.sha256(shared_file(public).read_bytes()).hexdigest() == sha256


def test_the_two_places_agree_on_the_checksums():
    assert databases.DISEASE_DB_SHA256 == disease_db.CHATDOCTOR_DB_SHA256
    text = shared_file("README.md").read_text(encoding="utf-8")  # the data folder's own list of checksums
    assert f"{rec_io.GENMEDGPT_SHA256}  genmedgpt-5k.json" in text
    assert f"{disease_db.CHATDOCTOR_DB_SHA256}  disease-database.csv" in text


@pytest.mark.parametrize("folder", [rec_io.GENMEDGPT_EMBEDDED.parent, disease_db.EMBEDDED_DB.parent])
def test_licence_and_attribution_beside_the_data(folder):
    licence = (folder / "LICENSE-ChatDoctor.txt").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0" in licence
    assert licence == shared_file("CHATDOCTOR-LICENSE.txt").read_text(encoding="utf-8")
    attribution = (folder / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for needed in ("https://github.com/Kent0n-Li/ChatDoctor", "Yunxiang Li", "Apache License 2.0", "gzip",
                   "unchanged"):
        assert needed in attribution


def test_package_data_ships_the_files():
    """pyproject's package-data globs name every embedded file (so `pip install` carries them)."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = config["tool"]["setuptools"]["package-data"]
    for path in (rec_io.GENMEDGPT_EMBEDDED, disease_db.EMBEDDED_DB):
        folder = path.parent
        package = folder.parent.relative_to(REPO_ROOT).as_posix().replace("/", ".")
        shipped = {p for glob in package_data[package] for p in folder.parent.glob(glob)}
        assert {path, folder / "LICENSE-ChatDoctor.txt", folder / "ATTRIBUTION.md"} <= shipped
        assert package in config["tool"]["setuptools"]["packages"]


def test_genmedgpt_offline(tmp_path, monkeypatch, offline):
    """`--data genmedgpt-5k` needs no network: the embedded copy is unpacked once into the cache."""
    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path))
    path = rec_io.resolve_dataset("genmedgpt-5k")
    assert path == tmp_path / "genmedgpt-5k.json"
    assert path.read_bytes() == shared_file("genmedgpt-5k.json").read_bytes()
    records, report = rec_io.usable_records(path)
    assert report["total"] == report["kept"] == len(records) == 5452
    mtime = path.stat().st_mtime_ns
    assert rec_io.resolve_dataset("GenMedGPT") == path and path.stat().st_mtime_ns == mtime  # unpacked once
    path.write_text("[]")  # a damaged cache copy is replaced, not trusted
    assert rec_io.resolve_dataset("genmedgpt-5k").read_bytes() == shared_file("genmedgpt-5k.json").read_bytes()


def test_disease_db_offline(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path / "cache"))
    path = databases.resolve_db("chatdoctor", tmp_path)
    db = load_disease_db(path)
    assert db.sha256 == databases.DISEASE_DB_SHA256
    assert db == load_disease_db(shared_file("disease-database.csv"))._replace(path=str(path))


def test_download_by_name_offline_is_one_line(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path))
    with pytest.raises(rec_io.DataError, match=r"^https://\S+chatdoctor5k.json: download failed .* --data PATH$"):
        rec_io.resolve_dataset("genmedgpt-5k@download")
    with pytest.raises(rec_io.DataError, match=r"download failed .* --db PATH$"):
        databases.resolve_db("chatdoctor@download", tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("content", [gzip.compress(b'[{"instruction": "", "input": "x", "output": "y"}]'),
                                     b"not gzip at all", gzip.compress(b"x" * 100)[:-9]],
                         ids=["other bytes", "not gzip", "truncated"])
def test_a_damaged_embedded_copy_is_refused(tmp_path, monkeypatch, content):
    """A damaged install is one line naming the file and leaves nothing in the cache."""
    bad = tmp_path / "genmedgpt-5k.json.gz"
    bad.write_bytes(content)
    monkeypatch.setattr(rec_io, "GENMEDGPT_EMBEDDED", bad)
    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path / "cache"))
    with pytest.raises(rec_io.DataError, match=rf"^{bad}: .*pass --data PATH$"):
        rec_io.resolve_dataset("genmedgpt-5k")
    assert not list((tmp_path / "cache").iterdir())


def test_unwritable_cache_is_one_line(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MEDLORA_CACHE", str(blocker / "cache"))  # a folder below a file cannot be made
    with pytest.raises(rec_io.DataError, match=r"cannot unpack .* set MEDLORA_CACHE to a writable folder"):
        rec_io.resolve_dataset("genmedgpt-5k")


def test_data_flag_help_names_the_embedded_copy():
    from lora.finetune.flags import build_parser

    assert "embedded" in build_parser().format_help()
    assert Path(rec_io.GENMEDGPT_EMBEDDED).name == "genmedgpt-5k.json.gz"
