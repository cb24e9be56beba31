"""Training examples: tokenisation with loss masks, the held-out split, the data order, micro-batches.

A record becomes `{"input_ids", "labels", "n_targets"}`: the prompt (`minillama.templates`) and the
response encoded separately and concatenated, so the loss-mask boundary is exact; labels are
IGNORE_INDEX on the prompt unless `train_on_inputs`. The order of the examples is a pure function of
(seed, epoch), so a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import torch

from minillama.templates import answer_end_id, prompt_ids, response_ids
from plumbing.durable import write_json_atomic
from plumbing.files import sha256_file

from lora.finetune.records import DataError, resolve_dataset, usable_records

IGNORE_INDEX = -100  # label of tokens left out of the loss (PyTorch cross_entropy's ignore_index)
# A row with no target: it contributes exactly 0 to the loss and its gradient. Ranks with less work than
# others run it, so every rank makes the same number of forward passes (what DDP and FSDP collectives need).
DUMMY_EXAMPLE = {"input_ids": [0, 0], "labels": [IGNORE_INDEX, IGNORE_INDEX], "n_targets": 0}


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
    r_ids = response_ids(record, tokenizer, template)
    ids = (p_ids + r_ids)[:cutoff_len]
    truncated = len(p_ids) + len(r_ids) > cutoff_len
    if len(ids) < cutoff_len:
        ids.append(answer_end_id(tokenizer, template))  # EOS; Llama-3's chat format ends a turn with <|eot_id|>
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


def pack_rows(examples: list[dict], capacity: int) -> list[list[int]]:
    """Padding-free packing: the examples' indices placed into as few rows as their lengths allow, each row
    holding at most `capacity` tokens, or the longest example if longer (first-fit decreasing).

    Returns:
        rows of example indices, each row in the order the examples were placed.
    """
    width = max([capacity] + [len(e["input_ids"]) for e in examples])
    rows: list[list[int]] = []
    room: list[int] = []  # free tokens of each row
    for i in sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"])):
        n = len(examples[i]["input_ids"])
        row = next((r for r, free in enumerate(room) if free >= n), None)
        if row is None:
            rows.append([]), room.append(width)
            row = len(rows) - 1
        rows[row].append(i)
        room[row] -= n
    return rows


def collate_packed(examples: list[dict], capacity: int, pad_id: int = 0) -> tuple[torch.Tensor, ...]:
    """A micro-batch packed into rows of at most `capacity` tokens (`pack_rows`; the training run's
    cutoff_len), right-padded to the fullest row: what `collate` gives, plus per-token
    positions that restart at 0 with each example and segment ids that keep attention inside an example.

    The first token of each example gets label IGNORE_INDEX: the token before it in the row belongs to
    another example, and predicting across that border is not a target (unpacked, the first token is
    never a target either). So the loss, its gradients and the update equal the padded batch's.

    Returns:
        (input_ids, labels, position_ids, segment_ids), each [R, W] with R <= B rows and W the fullest
        row's tokens; segment_ids are the examples' indices in `examples`, -1 on padding.
    """
    rows = pack_rows(examples, capacity)
    width = max(sum(len(examples[i]["input_ids"]) for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segments = torch.full((len(rows), width), -1, dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            e, n = examples[i], len(examples[i]["input_ids"])
            ids[r, start:start + n] = torch.tensor(e["input_ids"])
            labels[r, start + 1:start + n] = torch.tensor(e["labels"][1:])
            positions[r, start:start + n] = torch.arange(n)
            segments[r, start:start + n] = i
            start += n
    return ids, labels, positions, segments


def micro_batch(examples: list[dict], packing: bool = False, capacity: int = 0) -> tuple[torch.Tensor, ...]:
    """What `SummedNLL` takes for a micro-batch: `collate_packed`'s four tensors (rows of at most `capacity`
    tokens) with packing, else `collate`'s two."""
    return collate_packed(examples, capacity) if packing else collate(examples)


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
        write_json_atomic(run / "data_report.json", report)
        write_json_atomic(run / "split.json", {"seed": cfg.seed, "val_size": cfg.val_size, "val_ids": val_ids,
                                               "train_ids": train_ids, "instruction": main_instruction(records)})
    return train_ex, val_ex, report


def main_instruction(records: dict[str, dict]) -> str:
    """The instruction most records share (GenMedGPT-5k has one): what a chat with the model is asked under."""
    counts: dict[str, int] = {}
    for r in records.values():
        counts[r["instruction"].strip()] = counts.get(r["instruction"].strip(), 0) + 1
    return max(counts, key=counts.get) if counts else ""


def global_batch(step: int, examples: list[dict], batch_size: int, seed: int) -> list[dict]:
    """The examples of optimiser step `step`: a slice of epoch `step // steps_per_epoch`'s shuffle."""
    per_epoch = math.ceil(len(examples) / batch_size)
    epoch, i = divmod(step, per_epoch)
    order = epoch_order(len(examples), seed, epoch)
    return [examples[j] for j in order[i * batch_size:(i + 1) * batch_size]]


def rank_micro_batches(batch: list[dict], batch_size: int, micro_batch_size: int, rank: int,
                       world_size: int) -> list[list[dict]]:
    """This rank's contiguous share (batch_size / world_size) of the global batch, cut into micro-batches.

    Every rank gets the same number of micro-batches, share / micro_batch_size: a short last batch
    leaves some empty, and those run `DUMMY_EXAMPLE` (loss exactly 0).
    """
    share = batch_size // world_size
    mine = batch[rank * share:(rank + 1) * share]
    return [mine[i:i + micro_batch_size] or [DUMMY_EXAMPLE] for i in range(0, share, micro_batch_size)]


def total_steps(n_examples: int, batch_size: int, num_epochs: float, max_steps: int) -> int:
    """Optimiser steps of the run: `max_steps` if > 0, else epochs x ceil(examples / batch)."""
    return max_steps if max_steps > 0 else math.ceil(num_epochs * math.ceil(n_examples / batch_size))
