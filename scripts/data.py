"""Instruction data: download, load + validate, prompt templates, tokenisation with loss masks, split.

Datasets are alpaca-style records `{"instruction", "input", "output"}` as a JSON list or as JSONL
(GenMedGPT-5k, HealthCareMagic-100k and iCliniq share this shape). A record's id is its 0-based index
in the file, as a string; ids survive skipping, so `split.json` names pairs of the file itself.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from pathlib import Path

import torch

from scripts.train_config import TrainError

GENMEDGPT_URL = "https://raw.githubusercontent.com/Kent0n-Li/ChatDoctor/main/chatdoctor5k.json"
GENMEDGPT_SHA256 = "780c1a6aa67d461359ac220c120134429290b1e340545c3ad8954e1aa235d80f"
IGNORE_INDEX = -100  # label of tokens left out of the loss (PyTorch cross_entropy's ignore_index)
FIELDS = ("instruction", "input", "output")

# alpaca-lora's templates/alpaca.json: the wording of ChatDoctor's train_lora.py `generate_prompt`, without
# the indentation that its triple-quoted f-string leaves inside the prompt text.
ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


class DataError(TrainError):
    """A dataset problem; the message starts with the file it concerns."""


def cache_dir() -> Path:
    """`$MEDLORA_CACHE`, else `~/.cache/medlora`."""
    return Path(os.environ.get("MEDLORA_CACHE", Path.home() / ".cache" / "medlora"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_genmedgpt(timeout: float = 60.0) -> Path:
    """Download GenMedGPT-5k (ChatDoctor's `chatdoctor5k.json`) into the cache once; verify its sha256."""
    import httpx

    dest = cache_dir() / "genmedgpt-5k.json"
    if dest.is_file() and sha256_file(dest) == GENMEDGPT_SHA256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    try:
        with httpx.stream("GET", GENMEDGPT_URL, timeout=timeout, follow_redirects=True) as r:
            r.raise_for_status()
            with open(tmp, "wb") as f:
                for chunk in r.iter_bytes():
                    f.write(chunk)
    except (httpx.HTTPError, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{GENMEDGPT_URL}: download failed ({type(e).__name__}); download the file yourself "
                        f"and pass --data PATH/chatdoctor5k.json") from None
    got = sha256_file(tmp)
    if got != GENMEDGPT_SHA256:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{GENMEDGPT_URL}: sha256 {got} differs from the expected {GENMEDGPT_SHA256}")
    tmp.replace(dest)
    return dest


def resolve_dataset(name_or_path: str) -> Path:
    """A dataset name (`genmedgpt-5k`) is downloaded to the cache; anything else is a path."""
    if name_or_path.lower() in ("genmedgpt-5k", "genmedgpt"):
        return download_genmedgpt()
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such dataset file")
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
    else:
        fmt = "jsonl"
        for lineno, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append((json.loads(line), None))
                except json.JSONDecodeError as e:
                    items.append((None, f"line {lineno}: invalid JSON ({e.msg})"))
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


def prompt_ids(record: dict, tokenizer, template: str) -> list[int]:
    """Token ids of the prompt (BOS included) that precedes the response.

    `alpaca`: ChatDoctor's/alpaca-lora's prompt text. `llama2-chat`: Meta's chat format through
    `Tokenizer.encode_chat`, with the instruction as the system prompt and the input as the user turn
    (GenMedGPT's instruction is a role description, which is what Llama-2's system prompt is for).
    """
    instruction, user_input = record["instruction"].strip(), record["input"].strip()
    if template == "alpaca":
        fmt = ALPACA_PROMPT if user_input else ALPACA_PROMPT_NO_INPUT
        return tokenizer.encode(fmt.format(instruction=instruction, input=user_input), bos=True, eos=False)
    if template == "llama2-chat":
        messages = [{"role": "system", "content": instruction}] if instruction and user_input else []
        messages.append({"role": "user", "content": user_input or instruction})
        return tokenizer.encode_chat(messages)
    raise DataError(f"template: unknown template {template!r} (alpaca or llama2-chat)")


def tokenize_record(record: dict, tokenizer, template: str, cutoff_len: int,
                    train_on_inputs: bool = False) -> dict:
    """Prompt + response ids truncated to `cutoff_len`, EOS appended only when there is room.

    This is alpaca-lora's rule (`tokenize(..., add_eos_token=True)`): a truncated sequence ends
    without EOS, so the model never learns to stop where the text was merely cut. The prompt and the
    response are encoded separately and concatenated, so the loss mask boundary is exact.

    Returns:
        {"input_ids": list[int], "labels": list[int], "n_targets": int, "truncated": bool};
        labels are the ids with the prompt set to IGNORE_INDEX unless `train_on_inputs`.
    """
    p_ids = prompt_ids(record, tokenizer, template)
    r_ids = tokenizer.encode(record["output"].strip(), bos=False, eos=False)
    ids = (p_ids + r_ids)[:cutoff_len]
    truncated = len(p_ids) + len(r_ids) > cutoff_len
    if len(ids) < cutoff_len:
        ids.append(tokenizer.eos_id)
    n_prompt = min(len(p_ids), len(ids))
    labels = list(ids) if train_on_inputs else [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
    # Targets are predicted from the previous position, so the first token is never a target.
    n_targets = sum(1 for t in labels[1:] if t != IGNORE_INDEX)
    return {"input_ids": ids, "labels": labels, "n_targets": n_targets, "truncated": truncated}


def split_ids(ids: list[str], val_size: int, seed: int) -> tuple[list[str], list[str]]:
    """Seeded held-out split: (train_ids, val_ids), each sorted by index; stable across machines."""
    if val_size >= len(ids):
        raise DataError(f"split: val_size {val_size} leaves no training records out of {len(ids)}")
    ordered = sorted(ids, key=int)
    val = set(random.Random(seed).sample(ordered, val_size))
    return [i for i in ordered if i not in val], [i for i in ordered if i in val]


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """Shuffle order of epoch `epoch`: a pure function of (seed, epoch), so a resumed run sees the same."""
    order = list(range(n))
    random.Random(f"medlora-shuffle:{seed}:{epoch}").shuffle(order)
    return order


def collate(examples: list[dict], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad a micro-batch: (input_ids [B, T], labels [B, T]); padding is IGNORE_INDEX in labels.

    Right padding needs no attention mask: under the causal mask no real token attends to a later pad.
    """
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
        labels[row, : len(e["labels"])] = torch.tensor(e["labels"])
    return ids, labels


def tokenize_ids(records: dict[str, dict], ids: list[str], tokenizer, template: str, cutoff_len: int,
                 train_on_inputs: bool) -> tuple[list[dict], dict]:
    """Tokenise the records `ids`; drop those with no target token left after truncation.

    Returns:
        (examples, counts): each example is `tokenize_record`'s dict plus its "id"; counts holds
        "tokenized", "truncated" and the ids dropped as "no_target_ids".
    """
    examples, truncated, dropped = [], 0, []
    for i in ids:
        ex = tokenize_record(records[i], tokenizer, template, cutoff_len, train_on_inputs)
        if ex["n_targets"] == 0:
            dropped.append(i)
            continue
        truncated += ex["truncated"]
        examples.append({**ex, "id": i})
    return examples, {"tokenized": len(examples), "truncated": truncated, "no_target_ids": dropped}


def prepare(cfg, run: Path, tok, write: bool = True) -> tuple[list[dict], list[dict], dict]:
    """Load + validate, split, tokenise a run's dataset (`cfg`: a TrainConfig); print the counts and
    write data_report.json and split.json into `run` when `write` (rank 0).

    Returns:
        (train examples, validation examples, report).
    """
    path = run / "demo_data.json" if cfg.data == "demo" else resolve_dataset(cfg.data)
    records, report = usable_records(path, cfg.on_bad_record)
    train_ids, val_ids = split_ids(list(records), cfg.val_size, cfg.seed)
    args = (tok, cfg.template, cfg.cutoff_len, cfg.train_on_inputs)
    train_ex, train_counts = tokenize_ids(records, train_ids, *args)
    val_ex, val_counts = tokenize_ids(records, val_ids, *args)
    report.update(sha256=sha256_file(path), train=train_counts, val=val_counts)
    if not train_ex:
        raise DataError(f"{path}: no training record has a response token within cutoff_len {cfg.cutoff_len}")
    if write:
        print(f"data: {path}: {report['kept']} of {report['total']} records kept, {report['skipped']} skipped"
              + "".join(f"\n  {path}: record {p['index']}: {p['problem']}" for p in report["problems"][:10])
              + (f"\n  ... {report['skipped'] - 10} more in data_report.json" if report["skipped"] > 10 else "")
              + f"\n  train {len(train_ex)} / val {len(val_ids)} pairs, {train_counts['truncated']} train "
              f"sequences cut at {cfg.cutoff_len} tokens, {len(train_counts['no_target_ids'])} without a target dropped",
              file=sys.stderr)
        (run / "data_report.json").write_text(json.dumps(report, indent=1) + "\n")
        (run / "split.json").write_text(json.dumps({"seed": cfg.seed, "val_size": cfg.val_size, "val_ids": val_ids,
                                                    "train_ids": train_ids}, indent=1) + "\n")
    return train_ex, val_ex, report
