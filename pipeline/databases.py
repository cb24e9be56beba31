"""The disease database the grounding stage scores against: the real one, a local file, or the demo's table.

- "chatdoctor": ChatDoctor's `format_dataset.csv` (the database GenMedGPT-5k was generated from): the copy
  embedded in evalkit (`evalkit/data/`), unpacked once into the cache and checked against the public
  file's sha256 (the paper and smollm2 presets; offline). Without the embedded copy, it is downloaded.
- "chatdoctor@download": the public file, downloaded once into the cache and sha256-checked.
- "demo": the CPU demo's own small condition table (`lora.finetune.demo_data.CONDITIONS`), written in the
  same CSV format into the run folder, so the demo shows the stage too.
- any other value: a path to a database CSV (`--db PATH`).
"""
from __future__ import annotations

import re
from pathlib import Path

from evalkit.disease_db import CHATDOCTOR_DB_SHA256, EMBEDDED_DB, write_disease_db
from lora.finetune.demo_data import CONDITIONS
from lora.finetune.records import download, unpack

DISEASE_DB_URL = "https://raw.githubusercontent.com/Kent0n-Li/ChatDoctor/main/format_dataset.csv"
DISEASE_DB_SHA256 = CHATDOCTOR_DB_SHA256
NAMED = ("demo", "chatdoctor", "chatdoctor@download")  # the names --db takes besides a CSV path


def _bare(name: str) -> str:
    """'a urinary tract infection' -> 'urinary tract infection': database names carry no article."""
    return re.sub(r"^(a|an|the)\s+", "", name)


def write_demo_db(path: Path) -> Path:
    """The demo's condition table as a database CSV (names without articles)."""
    rows = [(_bare(c), [_bare(s) for s in symptoms], [_bare(t) for t in tests], [_bare(m) for m in meds])
            for c, symptoms, tests, meds in CONDITIONS]
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_disease_db(path, rows)


def resolve_db(spec: str, run_dir: Path) -> Path:
    """The database file for `spec` (one of `NAMED` or a path); unpacking, downloads and writes happen here."""
    if spec == "chatdoctor" and EMBEDDED_DB.is_file():
        return unpack(EMBEDDED_DB, DISEASE_DB_SHA256, "disease-database.csv", "--db")
    if spec in ("chatdoctor", "chatdoctor@download"):
        return download(DISEASE_DB_URL, DISEASE_DB_SHA256, "disease-database.csv", "--db")
    if spec == "demo":
        return write_demo_db(run_dir / "grounding" / "demo-disease-db.csv")
    return Path(spec).expanduser()
