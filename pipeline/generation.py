"""Stage 2 of the reproduction: responses of the base and the fine-tuned model on the held-out pairs.

Exactly the ids of the training run's `split.json` (`val_ids`), re-read from the dataset file whose
sha256 is checked against the run's `config.json`. Both models decode with the same settings
(recorded in `generations/meta.json`); prompts are batched with left padding and decoded with the
KV cache of `minillama`'s `model.generate`. The fine-tuned model is the same base weights with the
run's best adapter loaded by `lora.load_adapter`; reading the run folder is `lora/finetune/trained_run.py`.

Output (the record format shared by evalkit and judge), one line per held-out pair and model:

    generations/base.jsonl, generations/finetuned.jsonl
    {"id", "model", "prompt", "reference", "response", "finish_reason": "stop"|"length",
     "meta": {"prompt_tokens", "new_tokens"}}

Batches are planned once for all items (longest prompts first, so a batch wastes little padding):
batch k is written, when complete, to `parts/<model>-b<batch_size>/batch_<k>.jsonl` (atomically), and
a rerun generates only the batches without a file, so no id is missing or doubled after a kill.
Under `torchrun` rank r generates batches r, r+N, r+2N, ...; rank 0 merges the parts in id order
into `<model>.jsonl`. Each batch holds the same prompts whatever the number of processes, so the merged
file is byte-identical to a one-process run (on CPU; GPU kernels may differ in the last bits).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from tqdm import tqdm

from lora.finetune.distributed import DistInfo, barrier
from lora.finetune.trained_run import TrainRun
from plumbing import threads
from plumbing.durable import write_json_atomic, write_text_atomic

from pipeline.config import GenerationSettings, PipelineError
from pipeline.manifest import sha256_tree

MODELS = ("base", "finetuned")


def read_done(path: Path) -> dict[str, dict]:
    """Records already in a generation file, by id; a torn last line (a crash mid-write) is cut off.

    Every complete line ends with "\\n" (a batch is written as whole lines, then flushed), so the
    bytes after the last "\\n" are a torn write: they are truncated away and regenerated.

    Raises:
        PipelineError: a malformed complete line, or the same id twice (never produced by this
            stage: the file was edited by hand).
    """
    if not path.exists():
        return {}
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]  # b"" when there is no complete line
    done: dict[str, dict] = {}
    for lineno, line in enumerate(complete.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            rec = None
        if not (isinstance(rec, dict) and "id" in rec and "response" in rec):
            raise PipelineError(f"{path}:{lineno}: not a generation record; delete the file to regenerate")
        if str(rec["id"]) in done:
            raise PipelineError(f"{path}:{lineno}: id {rec['id']} appears twice; delete the file to regenerate")
        done[str(rec["id"])] = rec
    if len(complete) < len(raw):
        with open(path, "r+b") as f:  # cut the torn tail so appends start on a fresh line
            f.truncate(len(complete))
    return done


def decoding_meta(settings: GenerationSettings, run: TrainRun, tokenizer, device: str) -> dict:
    """What must be equal between a partial file and a resumed run, and between the two models."""
    return {
        "max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size,
        "temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k,
        "seed": settings.seed, "dtype": settings.dtype, "device": device,
        "eos_id": tokenizer.eos_id if len(tokenizer.eos_ids) == 1 else list(tokenizer.eos_ids),
        "pad_id": tokenizer.pad_id, "padding": "left",
        "template": run.template, "base_model": run.base_model, "base_quantize": run.quantize or "none",
        "adapter": str(run.adapter_dir),
        "adapter_sha256": run.adapter_sha256, "dataset": str(run.dataset_path),
        "dataset_sha256": run.dataset_sha256, "split_seed": run.split_seed,
    }


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def plan_batches(items: list[tuple[str, dict, list[int]]], batch_size: int) -> list[list[tuple]]:
    """All items cut into batches, longest prompt first (ties by id): the same plan on every rank."""
    order = sorted(items, key=lambda it: (-len(it[2]), int(it[0]) if it[0].isdigit() else 0, it[0]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def parts_dir(out_dir: Path, model_name: str, batch_size: int) -> Path:
    return out_dir / "parts" / f"{model_name}-b{batch_size}"


def generate_parts(model, tokenizer, batches: list[list[tuple]], folder: Path, model_name: str,
                   settings: GenerationSettings, device: str, rank: int = 0, world_size: int = 1,
                   progress=None) -> int:
    """Generate this rank's batches that have no part file yet; returns how many batches it generated."""
    folder.mkdir(parents=True, exist_ok=True)
    made = 0
    for k in range(rank, len(batches), world_size):
        path = folder / f"batch_{k:06d}.jsonl"
        if path.is_file():
            if progress is not None:
                progress.update(len(batches[k]))
            continue
        records = generate_batch(model, tokenizer, batches[k], model_name, settings, device)
        threads.tick()
        write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        made += 1
        if progress is not None:
            progress.update(len(batches[k]))
    return made


def merge_parts(folder: Path, n_batches: int, dest: Path) -> None:
    """Concatenate the part files in id order into `dest` (atomically); the parts are then removed."""
    records = []
    for k in range(n_batches):
        records += read_done(folder / f"batch_{k:06d}.jsonl").values()
    records.sort(key=lambda r: (0, int(r["id"]), "") if str(r["id"]).isdigit() else (1, 0, str(r["id"])))
    write_text_atomic(dest, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    shutil.rmtree(folder, ignore_errors=True)


@torch.inference_mode()
def generate_batch(model, tokenizer, batch: list[tuple[str, dict, list[int]]], model_name: str,
                   settings: GenerationSettings, device: str) -> list[dict]:
    """One left-padded batch through `model.generate`; returns the output records."""
    width = max(len(ids) for _, _, ids in batch)
    input_ids = torch.full((len(batch), width), tokenizer.pad_id, dtype=torch.long)  # [B, T]
    mask = torch.zeros((len(batch), width), dtype=torch.long)  # [B, T], 1 = real token
    for row, (_, _, ids) in enumerate(batch):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        mask[row, width - len(ids):] = 1
    out = model.generate(input_ids.to(device), settings.max_new_tokens, temperature=settings.temperature,
                         top_p=settings.top_p, top_k=settings.top_k, eos_id=list(tokenizer.eos_ids),
                         attention_mask=mask.to(device), seed=settings.seed, pad_id=tokenizer.pad_id)
    new = out[:, width:].tolist()  # [B, <= max_new_tokens]
    records = []
    for (item_id, record, ids), tokens in zip(batch, new):
        ends = [k for k, t in enumerate(tokens) if t in tokenizer.eos_ids]  # Llama-3: any of its EOS ids
        if ends:
            tokens, reason = tokens[:ends[0]], "stop"
        else:
            reason = "length"
        records.append({
            "id": item_id, "model": model_name, "prompt": prompt_text(record),
            "reference": record["output"].strip(), "response": tokenizer.decode(tokens).strip(),
            "finish_reason": reason, "meta": {"prompt_tokens": len(ids), "new_tokens": len(tokens)},
        })
    return records


def prompt_text(record: dict) -> str:
    """The patient's message as the judge sees it (GenMedGPT's shared instruction is not repeated)."""
    return (record["input"].strip() or record["instruction"].strip())


def base_checksums(base: str) -> dict[str, str]:
    """sha256 of the base model's weight, config and tokenizer files (a local folder or the Hub cache)."""
    folder = Path(base).expanduser()
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download
            folder = Path(snapshot_download(base, local_files_only=True,
                                            allow_patterns=["*.safetensors", "*.json", "tokenizer.model"]))
        except Exception:  # not in the cache: nothing to hash here, the report says so
            return {}
    return sha256_tree(folder)


def run_generation(run: TrainRun, out_dir: Path, settings: GenerationSettings, info: DistInfo | None = None) -> dict:
    """Stage 2: write `base.jsonl` and `finetuned.jsonl` under `out_dir`; return the meta dict.

    Args:
        info: this process's place under torchrun (None: one process); every rank must call this.
    """
    rank, world = (info.rank, info.world_size) if info else (0, 1)
    device = pick_device(settings.device)
    if device == "cuda" and info is not None and info.device.type == "cuda":
        device = str(info.device)
    records = run.held_out_records(settings.limit)
    tokenizer = run.load_tokenizer()
    meta = decoding_meta(settings, run, tokenizer, pick_device(settings.device))
    meta_path = out_dir / "meta.json"
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        if meta_path.exists():
            old = json.loads(meta_path.read_text(encoding="utf-8"))
            changed = sorted(k for k in meta if k not in ("device", "batch_size")
                             and old.get("decoding", {}).get(k) != meta[k])
            if changed:
                raise PipelineError(f"{meta_path}: these responses were generated with other settings "
                                    f"({', '.join(changed)}); use --force or another --run-dir")
        write_json_atomic(meta_path, {"decoding": meta, "models": list(MODELS), "ids": list(records),
                                      "n_items": len(records), "base_sha256": base_checksums(run.base_model)})
    if info is not None:
        barrier(info)
    items = [(i, rec, run.prompt_ids(rec, tokenizer)) for i, rec in records.items()]
    batches = plan_batches(items, settings.batch_size)
    model = None
    for name in MODELS:
        path = out_dir / f"{name}.jsonl"
        folder = parts_dir(out_dir, name, settings.batch_size)
        if not (path.is_file() and len(read_done(path)) == len(items)):
            if model is None:
                model = run.load_base_model(settings.dtype, device)
            if name == "finetuned":
                run.apply_adapter(model)
            mine = sum(len(b) for b in batches[rank::world])
            with tqdm(total=mine, desc=f"generate {name}" + (f" (rank {rank})" if world > 1 else ""),
                      unit="resp") as bar:
                generate_parts(model, tokenizer, batches, folder, name, settings, device, rank, world, bar)
        if info is not None:
            barrier(info)
        if rank == 0 and not (path.is_file() and len(read_done(path)) == len(items)):
            merge_parts(folder, len(batches), path)
    if rank != 0:
        return {}
    shutil.rmtree(out_dir / "parts", ignore_errors=True)
    counts = {}
    for name in MODELS:
        done = read_done(out_dir / f"{name}.jsonl")
        missing = [i for i in records if i not in done]
        extra = [i for i in done if i not in records]
        if missing or extra:
            raise PipelineError(f"{out_dir / (name + '.jsonl')}: ids differ from split.json "
                                f"({len(missing)} missing, {len(extra)} not held out)")
        counts[name] = {"n": len(done), "stop": sum(r.get("finish_reason") == "stop" for r in done.values()),
                        "length": sum(r.get("finish_reason") == "length" for r in done.values())}
    return {"decoding": meta, "counts": counts, "n_items": len(records)}
