"""Instruction datasets on disk: the embedded GenMedGPT-5k (or its download), JSON-list or JSONL files, validation.

Datasets are alpaca-style records `{"instruction", "input", "output"}` as a JSON list or as JSONL
(GenMedGPT-5k, HealthCareMagic-100k and iCliniq share this shape). A record's id is its 0-based index
in the file, as a string; ids survive skipping, so `split.json` names pairs of the file itself.

GenMedGPT-5k (Apache-2.0, ChatDoctor) ships inside the package, gzip-compressed (`datasets/`, with its
licence and `ATTRIBUTION.md`): `--data genmedgpt-5k` unpacks it once into the cache and checks the sha256
of the decompressed bytes against the public file's, so the paper's data needs no network.
`--data genmedgpt-5k@download` fetches the public file instead (also the fallback when the embedded copy
is missing, e.g. in a build that left the package data out).
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import zlib
from pathlib import Path

from plumbing.durable import replace_atomic
from plumbing.files import input_problem, sha256_file

from lora.finetune.config import TrainError

GENMEDGPT_URL = "https://raw.githubusercontent.com/Kent0n-Li/ChatDoctor/main/chatdoctor5k.json"
GENMEDGPT_SHA256 = "780c1a6aa67d461359ac220c120134429290b1e340545c3ad8954e1aa235d80f"
GENMEDGPT_EMBEDDED = Path(__file__).with_name("datasets") / "genmedgpt-5k.json.gz"  # chatdoctor5k.json, gzipped
GENMEDGPT_NAMES = ("genmedgpt-5k", "genmedgpt")  # the embedded copy; NAME@download: the public file
FIELDS = ("instruction", "input", "output")


class DataError(TrainError):
    """A dataset problem; the message starts with the file it concerns."""


def cache_dir() -> Path:
    """`$MEDLORA_CACHE`, else `~/.cache/medlora`."""
    return Path(os.environ.get("MEDLORA_CACHE", Path.home() / ".cache" / "medlora"))


def download(url: str, sha256: str, name: str, flag: str, timeout: float = 60.0) -> Path:
    """Download `url` into the cache as `name` once and verify its sha256 (a bad or partial file never stays).

    Args:
        flag: the option to name in the error when the download fails (e.g. "--data").
    """
    import httpx

    dest = cache_dir() / name
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest

    def fetch(tmp: Path) -> None:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as r:
            r.raise_for_status()
            with open(tmp, "wb") as f:
                for chunk in r.iter_bytes():
                    f.write(chunk)
        got = sha256_file(tmp)
        if got != sha256:
            raise DataError(f"{url}: sha256 {got} differs from the expected {sha256}")

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        replace_atomic(dest, fetch)
    except (httpx.HTTPError, OSError) as e:
        raise DataError(f"{url}: download failed ({type(e).__name__}); download the file yourself and pass "
                        f"{flag} PATH") from None
    return dest


def unpack(src: Path, sha256: str, name: str, flag: str) -> Path:
    """Decompress the embedded gzip file `src` into the cache as `name` once; the sha256 of the decompressed
    bytes must be `sha256` (the public file's), else nothing stays in the cache.

    Args:
        flag: the option to name in the error (e.g. "--data").
    """
    dest = cache_dir() / name
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest

    def fill(tmp: Path) -> None:
        with gzip.open(src, "rb") as packed, open(tmp, "wb") as out:
            shutil.copyfileobj(packed, out)
        got = sha256_file(tmp)
        if got != sha256:
            raise DataError(f"{src}: the decompressed sha256 {got} differs from the public file's {sha256}; "
                            f"reinstall medlora, or pass {flag} PATH")

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        replace_atomic(dest, fill)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{src}: cannot unpack into {dest} ({getattr(e, 'strerror', None) or e}); set "
                        f"MEDLORA_CACHE to a writable folder, or pass {flag} PATH") from None
    return dest


def resolve_dataset(name_or_path: str) -> Path:
    """The dataset file for `name_or_path`: `genmedgpt-5k` is the embedded copy (unpacked into the cache,
    offline), `genmedgpt-5k@download` the public file (downloaded into the cache once); anything else a path.
    Both names give the same bytes (the public file's sha256), so the run's recorded checksum is the same."""
    name, _, source = name_or_path.lower().partition("@")
    if name in GENMEDGPT_NAMES and source in ("", "download"):
        if source == "" and GENMEDGPT_EMBEDDED.is_file():
            return unpack(GENMEDGPT_EMBEDDED, GENMEDGPT_SHA256, "genmedgpt-5k.json", "--data")
        return download(GENMEDGPT_URL, GENMEDGPT_SHA256, "genmedgpt-5k.json", "--data")
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such dataset file (the named datasets: genmedgpt-5k, the embedded copy, "
                        "or genmedgpt-5k@download)")
    return path


def _problem(obj: object) -> str | None:
    """Why `obj` is not a usable record, or None if it is."""
    if not isinstance(obj, dict):
        return f"not a JSON object but {type(obj).__name__}"
    for name in FIELDS:
        if name not in obj:
            return f"missing field {name!r}"
        if not isinstance(obj[name], str):
            return f"field {name!r} is {type(obj[name]).__name__}, not a string"
    if not obj["output"].strip():
        return "empty output"
    if not (obj["instruction"].strip() or obj["input"].strip()):
        return "empty instruction and input"
    return None


def load_records(path: Path, on_bad_record: str = "skip") -> tuple[dict[str, dict], dict]:
    """Read and validate a JSON-list or JSONL dataset.

    Returns:
        (records, report): records maps id (0-based index in the file, a string) -> record, in file
        order; report holds the file, format, counts and one entry per malformed record.
    Raises:
        DataError: unreadable file, or a malformed record while `on_bad_record == "stop"`.
    """
    problem = input_problem(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    items: list[tuple[object, str | None]] = []  # (object or None, parse problem)
    if text.lstrip().startswith("["):
        fmt = "json"
        try:
            items = [(obj, None) for obj in json.loads(text)]
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
        except RecursionError:
            raise DataError(f"{path}: invalid JSON: nested too deeply") from None
    else:
        fmt = "jsonl"
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append((json.loads(line), None))
                except json.JSONDecodeError as e:
                    items.append((None, f"line {lineno}: invalid JSON ({e.msg})"))
                except RecursionError:
                    items.append((None, f"line {lineno}: invalid JSON (nested too deeply)"))
    records: dict[str, dict] = {}
    problems = []
    for index, (obj, parse_problem) in enumerate(items):
        problem = parse_problem or _problem(obj)
        if problem is None:
            records[str(index)] = {k: obj[k] for k in FIELDS}  # type: ignore[index]
            continue
        problems.append({"file": str(path), "index": index, "problem": problem})
        if on_bad_record == "stop":
            raise DataError(f"{path}: record {index}: {problem} (use --on-bad-record skip to skip such records)")
    report = {"file": str(path), "format": fmt, "total": len(items), "kept": len(records),
              "skipped": len(problems), "on_bad_record": on_bad_record, "problems": problems}
    return records, report


def usable_records(path: Path, on_bad_record: str = "skip") -> tuple[dict[str, dict], dict]:
    """`load_records`, refusing a file of which no record is usable (naming the first problem)."""
    records, report = load_records(path, on_bad_record)
    if not records:
        if not report["problems"]:
            raise DataError(f"{path}: holds no records")
        first = report["problems"][0]
        raise DataError(f"{path}: none of {report['total']} records is usable (first: record {first['index']}: "
                        f"{first['problem']}; see --on-bad-record)")
    return records, report
