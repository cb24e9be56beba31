"""The CPU demo's base model: a tiny Llama, its own SentencePiece tokenizer, and a short warm-up.

The paper fine-tunes a pretrained chat model. A randomly initialised Llama is not a sensible stand-in:
LoRA only nudges attention projections, so with random MLPs and embeddings it could not produce words
at all. The demo therefore gives its base a short full-parameter "pretraining" on generic text
(`demo_data.make_corpus`: plain sentences about the same conditions, no dialogue format, no prompt),
like a real base that knows facts but was never taught the ChatDoctor task. LoRA fine-tuning then has
to teach the prompt format and the symptom -> condition, tests, medicines answer, which is what the
demo's held-out comparison measures.

Layout written to `<run>/base/`: `config.json` + `model.safetensors` (`Llama.save_pretrained`, loadable
by transformers), `tokenizer.model` (SentencePiece, Llama's ids: unk=0, bos=1, eos=2, no pad) and
`pretrain.json` (the warm-up's settings and final loss).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from minillama import Llama, LlamaConfig, Tokenizer
from minillama.templates import ALPACA_PROMPT, prompt_ids
from plumbing.durable import write_bytes_atomic, write_folder_atomic, write_json_atomic
from plumbing.locks import folder_lock

import lora
from lora.finetune import demo_data
from lora.finetune.records import cache_dir, load_records
from lora.finetune.schedule import lr_at

VOCAB_SIZE = 1024  # small: 256 byte-fallback pieces + ~770 merges learnt from the demo texts
TINY = dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=4, head_dim=32, max_position_embeddings=512, rms_norm_eps=1e-5)


def train_tokenizer(texts: list[str], out_file: Path, vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """Train a BPE SentencePiece model with Llama's special ids and normalisation settings.

    The model is written from memory (`model_writer`), not through a `model_prefix` path, so the file holds no
    path of this machine: the same texts give the same bytes (and sha256) everywhere.
    """
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buffer, vocab_size=vocab_size, model_type="bpe",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
        max_sentence_length=8192, num_threads=1, minloglevel=2)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out_file, buffer.getvalue())
    return Tokenizer(out_file)


def pack(token_lists: list[list[int]], seq_len: int) -> torch.Tensor:
    """Concatenate documents and cut into rows: [N, seq_len]."""
    flat = [t for ids in token_lists for t in ids]
    n = len(flat) // seq_len
    return torch.tensor(flat[: n * seq_len]).view(n, seq_len)  # [N, seq_len]


def _built_in(dtype: torch.dtype, build):
    """`build()` with `dtype` as torch's default, so the random initialisation itself runs in `dtype`: float32's
    `normal_` is vectorised differently on different CPUs (AVX-512, AVX2, none), float64's is not."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return build()
    finally:
        torch.set_default_dtype(previous)


def build_demo_base(out_dir: Path, records: list[dict], steps: int, seed: int = 0, batch: int = 16,
                    seq_len: int = 128, lr: float = 5e-3, sizes: dict | None = None,
                    dtype: torch.dtype = torch.float32, on_step: Callable[[int], None] | None = None) -> Path:
    """Tokenizer + tiny Llama + `steps` warm-up steps on generic text, saved to `out_dir`.

    The tokenizer sees the demo prompts too (a real tokenizer covers the words of its users); the
    model's warm-up sees only the generic corpus. `sizes` overrides `TINY` (tests use smaller). `dtype`
    is the warm-up's and the saved weights' (the demo's float64 makes its figures the same on every CPU).
    `on_step(step)` is called after each warm-up step (the entry point's thread policy, `plumbing.threads.tick`).
    """
    torch.manual_seed(seed)
    corpus = demo_data.make_corpus(6000, seed=seed + 1)
    prompts = [ALPACA_PROMPT.format(instruction=r["instruction"], input=r["input"]) + r["output"]
               for r in records]
    tok = train_tokenizer(corpus + prompts, out_dir / "tokenizer.model")
    config = LlamaConfig(vocab_size=tok.vocab_size, **{**TINY, **(sizes or {})})
    model = _built_in(dtype, lambda: Llama(config))
    rows = pack([tok.encode(s, bos=True, eos=True) for s in corpus], seq_len)  # [N, seq_len]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)  # Touvron et al. 2023
    gen = torch.Generator().manual_seed(seed)
    model.train()
    loss_value, start = float("nan"), time.perf_counter()
    with tqdm(total=steps, desc="demo base warm-up", unit="step") as bar:
        for step in range(steps):
            for group in opt.param_groups:  # warm-up 10 steps, then cosine to 10% (the fine-tuning schedule)
                group["lr"] = lr_at(step, lr, 10, steps, min_lr_ratio=0.1)
            x = rows[torch.randint(len(rows), (batch,), generator=gen)]  # [B, seq_len]
            logits = model(x[:, :-1])  # [B, seq_len-1, vocab]
            loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_value = loss.item()
            bar.set_postfix(loss=f"{loss_value:.3f}", threads=torch.get_num_threads(), refresh=False)
            bar.update(1)
            if on_step is not None:
                on_step(step + 1)
    model.eval()
    model.save_pretrained(out_dir)
    write_json_atomic(out_dir / "pretrain.json", {
        "what": "demo base: random-init tiny Llama + full-parameter warm-up on generic sentences",
        "steps": steps, "batch": batch, "seq_len": seq_len, "lr": lr, "final_loss": loss_value,
        "seconds": round(time.perf_counter() - start, 1), "config": config.to_hf_dict()})
    return out_dir


RECIPE_VERSION = 3  # bump when build_demo_base changes what it builds (3: the fine-tuning schedule, a path-free tokenizer)


def cached_demo_base(out_dir: Path, records: list[dict], steps: int, seed: int = 0,
                     dtype: torch.dtype = torch.float32, on_step: Callable[[int], None] | None = None) -> Path:
    """`build_demo_base` once per machine: the result is kept in the cache under a hash of its recipe
    (the records, steps, seed, sizes, torch version) and copied into `out_dir`.

    Two demos building the same base at once wait for each other (a lock), and a build killed midway
    leaves nothing in the cache (it is built in a temporary folder and renamed).
    """
    recipe = {"version": RECIPE_VERSION, "records": records, "steps": steps, "seed": seed, "sizes": TINY,
              "vocab": VOCAB_SIZE, "torch": torch.__version__, "dtype": str(dtype)}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    root = cache_dir() / "demo-base"
    cached = root / key
    lock = folder_lock(root, f".{key}.lock")
    while not lock.acquire():
        time.sleep(0.5)
    try:
        if not (cached / "pretrain.json").is_file():
            write_folder_atomic(cached, lambda tmp: build_demo_base(tmp, records, steps, seed=seed, dtype=dtype,
                                                                        on_step=on_step),
                                replace=True)
        else:
            print(f"demo base: reusing the cached build {cached}", file=sys.stderr)
    finally:
        lock.release()
    return write_folder_atomic(out_dir, lambda tmp: shutil.copytree(cached, tmp, dirs_exist_ok=True), replace=True)


def unigram_f1(hypothesis: str, reference: str) -> float:
    """Bag-of-words F1 of lower-cased word tokens (SQuAD-style token F1)."""
    hyp, ref = re.findall(r"\w+", hypothesis.lower()), re.findall(r"\w+", reference.lower())
    common: dict[str, int] = {}
    for w in set(hyp):
        common[w] = min(hyp.count(w), ref.count(w))
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    p, r = overlap / len(hyp), overlap / len(ref)
    return 2 * p * r / (p + r)


@torch.no_grad()
def greedy_responses(model, tok: Tokenizer, records: list[dict], template: str, max_new_tokens: int = 64,
                     batch: int = 8) -> list[str]:
    """Greedy responses to each record's prompt (left-padded batches through `Llama.generate`)."""
    model.eval()
    out = []
    for i in range(0, len(records), batch):
        prompts = [prompt_ids(r, tok, template) for r in records[i:i + batch]]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[tok.pad_id] * (width - len(p)) + p for p in prompts])  # [B, width]
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])  # [B, width]
        gen = model.generate(ids, max_new_tokens=max_new_tokens, eos_id=tok.eos_id, attention_mask=mask,
                             pad_id=tok.pad_id)  # [B, width + new]
        for row in gen[:, width:].tolist():
            out.append(tok.decode(row[: row.index(tok.eos_id)] if tok.eos_id in row else row).strip())
    return out


def named_condition(text: str) -> str | None:
    """The demo condition a text names first (longest names tried first), or None."""
    lowered = text.lower()
    hits = [(lowered.find(c[0].lower()), -len(c[0]), c[0]) for c in demo_data.CONDITIONS if c[0].lower() in lowered]
    return min(hits)[2] if hits else None


def compare_base_and_tuned(base_model, tuned_model, tok: Tokenizer, records: list[dict], ids: list[str],
                           template: str) -> dict:
    """Held-out comparison, base vs fine-tuned: mean unigram F1 against the references, the share of
    answers naming the reference's condition, and the first three responses."""
    result: dict = {"metric": "unigram F1 (bag of lower-cased words)", "n": len(records)}
    for name, model in (("base", base_model), ("finetuned", tuned_model)):
        responses = greedy_responses(model, tok, records, template)
        scores = [unigram_f1(h, r["output"]) for h, r in zip(responses, records)]
        right = [named_condition(h) == named_condition(r["output"]) for h, r in zip(responses, records)]
        result[name] = {"mean_f1": sum(scores) / max(len(scores), 1),
                        "condition_accuracy": sum(right) / max(len(right), 1),
                        "examples": [{"id": i, "response": h} for i, h in list(zip(ids, responses))[:3]]}
    result["references"] = [{"id": i, "reference": r["output"]} for i, r in list(zip(ids, records))[:3]]
    return result


def held_out_comparison(run: Path, tok: Tokenizer, template: str) -> dict:
    """`compare_base_and_tuned` on a finished demo run's held-out pairs (`run`/base, `run`/adapter)."""
    split = json.loads((run / "split.json").read_text())
    records, _ = load_records(run / "demo_data.json")
    held_out = [records[i] for i in split["val_ids"]]
    base_model = Llama.from_pretrained(run / "base")
    tuned = lora.load_adapter(Llama.from_pretrained(run / "base"), run / "adapter")
    return compare_base_and_tuned(base_model, tuned, tok, held_out, split["val_ids"], template)
