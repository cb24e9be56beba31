"""Stage 2 of the reproduction: responses of the base and the fine-tuned model on the held-out pairs.

Exactly the ids of the training run's `split.json` (`val_ids`), re-read from the dataset file whose
sha256 is checked against the run's `config.json`. Both models decode with the same settings
(recorded in `generations/meta.json`); prompts are batched with left padding and decoded with the
KV cache of `minillama`'s `model.generate`. The fine-tuned model is the same base weights with the
run's best adapter loaded by `lora.load_adapter`; reading the run folder is `scripts/train_run.py`.

Output (the record format shared by evalkit and judge), one line per held-out pair and model:

    generations/base.jsonl, generations/finetuned.jsonl
    {"id", "model", "prompt", "reference", "response", "finish_reason": "stop"|"length",
     "meta": {"prompt_tokens", "new_tokens"}}

Resumable at item granularity: each batch is appended and flushed; a rerun keeps the lines already
written, cuts a torn last line, and generates only the missing ids, so no id is missing or doubled.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from scripts.manifest import write_json_atomic  # noqa: E402
from scripts.pipeline_config import GenerationSettings, PipelineError  # noqa: E402
from scripts.train_run import TrainRun, resolve_base, resolve_data  # noqa: E402, F401  (re-exported)

MODELS = ("base", "finetuned")
FAULT_ENV = "MEDLORA_FAULT_KILL_AFTER_BATCHES"  # test hook: SIGKILL this process after N batches


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
        except (json.JSONDecodeError, UnicodeDecodeError):
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
        "eos_id": tokenizer.eos_id, "pad_id": tokenizer.pad_id, "padding": "left",
        "template": run.template, "base_model": run.base_model, "adapter": str(run.adapter_dir),
        "adapter_sha256": run.adapter_sha256, "dataset": str(run.dataset_path),
        "dataset_sha256": run.dataset_sha256, "split_seed": run.split_seed,
    }


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def generate_file(model, tokenizer, items: list[tuple[str, dict, list[int]]], path: Path, model_name: str,
                  settings: GenerationSettings, device: str, progress=None) -> int:
    """Generate every item of `items` not yet in `path`; append + flush per batch. Returns how many."""
    done = read_done(path)
    todo = [it for it in items if it[0] not in done]
    # Longest prompts first: batches of similar length waste little padding, and memory peaks early.
    todo.sort(key=lambda it: (-len(it[2]), int(it[0]) if it[0].isdigit() else 0, it[0]))
    if progress is not None:
        progress.update(len(items) - len(todo))
    kill_after = int(os.environ.get(FAULT_ENV, "0") or 0)
    batches = 0
    with open(path, "a", encoding="utf-8") as f:
        for start in range(0, len(todo), settings.batch_size):
            batch = todo[start:start + settings.batch_size]
            lines = [json.dumps(rec, ensure_ascii=False)
                     for rec in generate_batch(model, tokenizer, batch, model_name, settings, device)]
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
            batches += 1
            if progress is not None:
                progress.update(len(batch))
            if kill_after and batches >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # simulated crash for the resume test
    return len(todo)


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
                         top_p=settings.top_p, top_k=settings.top_k, eos_id=tokenizer.eos_id,
                         attention_mask=mask.to(device), seed=settings.seed, pad_id=tokenizer.pad_id)
    new = out[:, width:].tolist()  # [B, <= max_new_tokens]
    records = []
    for (item_id, record, ids), tokens in zip(batch, new):
        if tokenizer.eos_id in tokens:
            tokens, reason = tokens[:tokens.index(tokenizer.eos_id)], "stop"
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
    from scripts.manifest import sha256_tree

    folder = Path(base).expanduser()
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download
            folder = Path(snapshot_download(base, local_files_only=True,
                                            allow_patterns=["*.safetensors", "*.json", "tokenizer.model"]))
        except Exception:  # not in the cache: nothing to hash here, the report says so
            return {}
    return sha256_tree(folder)


def run_generation(run: TrainRun, out_dir: Path, settings: GenerationSettings) -> dict:
    """Stage 2: write `base.jsonl` and `finetuned.jsonl` under `out_dir`; return the meta dict."""
    from minillama.progress import Progress

    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(settings.device)
    records = run.held_out_records(settings.limit)
    tokenizer = run.load_tokenizer()
    meta = decoding_meta(settings, run, tokenizer, device)
    meta_path = out_dir / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        changed = sorted(k for k in meta if k not in ("device", "batch_size") and old.get("decoding", {}).get(k) != meta[k])
        if changed:
            raise PipelineError(f"{meta_path}: these responses were generated with other settings "
                                f"({', '.join(changed)}); use --force or another --run-dir")
    write_json_atomic(meta_path, {"decoding": meta, "models": list(MODELS), "ids": list(records),
                                  "n_items": len(records), "base_sha256": base_checksums(run.base_model)})
    items = [(i, rec, run.prompt_ids(rec, tokenizer)) for i, rec in records.items()]
    model = None
    for name in MODELS:
        path = out_dir / f"{name}.jsonl"
        if len(read_done(path)) == len(items):
            continue
        if model is None:
            model = run.load_base_model(settings.dtype, device)
        if name == "finetuned":
            run.apply_adapter(model)
        with Progress(total=len(items), desc=f"generate {name}", unit="resp") as bar:
            generate_file(model, tokenizer, items, path, name, settings, device, progress=bar)
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


if __name__ == "__main__":
    print(f"{Path(__file__).name}: this module is a stage of scripts/reproduce.py; run that", file=sys.stderr)
    sys.exit(2)
