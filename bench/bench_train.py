"""Training throughput and peak memory: scripts/train.py's LoRA step vs transformers + peft, same run.

Both sides get the same random weights (seeded, by parameter name), the same LoRA config (r=8,
alpha=16, dropout 0.05 on q,k,v,o), the same batches (GenMedGPT-5k records in the alpaca template,
tokenised by the Llama-2 tokenizer, cut at 256 tokens: real lengths, right-padded per batch) and the
same step: forward, Eq. 3 cross-entropy over response tokens, backward, AdamW on the LoRA weights.
On GPU both run bf16 weights + float32 LoRA under bf16 autocast (HF Trainer's `bf16=True`).

Each side runs in its own subprocess, so peak memory is its own: `torch.cuda.max_memory_allocated`
on GPU, peak RSS on CPU. Tokens/s counts real (non-pad) tokens per second of timed steps; the sides
alternate over `--repeats` fresh processes and the best of each is reported (a shared machine's
background load only ever slows a run down).

    python bench/bench_train.py                           # CPU, small shape, batch 2 x 256
    python bench/bench_train.py --shape 7b --device cuda --batches 1x256,8x256
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import torch

SHARED = REPO.parent / "shared" / "data"
SHAPES = {  # HF LlamaConfig fields; "7b" is Llama-2-7B (Touvron et al. 2023, Table 1)
    "tiny": dict(vocab_size=1024, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4),
    "small": dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                  num_attention_heads=8, num_key_value_heads=8),
    "7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def examples(cutoff: int, n: int, seed: int = 0) -> tuple[list[dict], str]:
    """Tokenised training examples with real lengths, and where they came from."""
    from lora.finetune import data, demo_data
    from lora.finetune.records import load_records

    tok_file, data_file = SHARED / "llama2-tokenizer.model", SHARED / "genmedgpt-5k.json"
    if tok_file.is_file() and data_file.is_file():
        from minillama import Tokenizer

        tok, (records, _) = Tokenizer(tok_file), load_records(data_file)
        source = "GenMedGPT-5k + Llama-2 tokenizer"
        recs = list(records.values())
    else:  # no reference data: the demo records with a byte-level stand-in tokenizer (longer sequences)
        class Bytes:
            bos_id, eos_id = 1, 2

            def encode(self, text, bos=True, eos=False):
                return [1] * bos + [3 + b for b in text.encode()] + [2] * eos
        tok, recs, source = Bytes(), demo_data.make_records(500), "demo records, byte tokens"
    random.Random(seed).shuffle(recs)
    return [data.tokenize_record(r, tok, "alpaca", cutoff) for r in recs[:n]], source


def init_weights(model: torch.nn.Module, seed: int) -> None:
    """Same values for the same parameter names on both sides: N(0, 0.02), norms 1."""
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)


def build(side: str, shape: str, device: torch.device, dtype: torch.dtype, quantize: str = "none"):
    """(model with LoRA, step_fn(ids, labels) -> loss tensor) for "ours" or "hf"; with quantize="nf4" the
    frozen base is 4-bit NF4 (ours: minillama.nf4; theirs: bitsandbytes through transformers, as QLoRA users do)."""
    if side == "ours":
        import lora
        from minillama import Llama, LlamaConfig
        from lora.finetune.loss import SummedNLL

        with torch.device("meta"):
            model = Llama(LlamaConfig(**SHAPES[shape], head_dim=SHAPES[shape]["hidden_size"] // SHAPES[shape]["num_attention_heads"]))
        model = model.to(dtype).to_empty(device=device)  # allocate in the final dtype only
        init_weights(model, 0)
        if quantize == "nf4":
            from minillama.nf4 import quantize_model
            quantize_model(model, compute_dtype=dtype)
        lora.apply_lora(model, lora.LoraConfig(r=8, alpha=16, dropout=0.05, target_modules=tuple(TARGETS)))

        loss_module = SummedNLL(model, "token")

        def loss_fn(ids, labels):
            return loss_module(ids, labels) / (labels[:, 1:] != -100).sum()
        return loss_module, loss_fn
    import peft
    import transformers

    config = transformers.LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, rms_norm_eps=1e-5)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    model = model.to(dtype).to_empty(device=device)  # allocate in the final dtype only
    init_weights(model, 0)
    with torch.device(device):  # to_empty left inv_freq uninitialised: rebuild it
        model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
    if quantize == "nf4":  # bitsandbytes quantises while loading: go through a saved copy
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            del model
            bnb = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                  bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
            model = transformers.LlamaForCausalLM.from_pretrained(tmp, quantization_config=bnb, dtype=dtype,
                                                                  device_map={"": str(device)})
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05,
                                                       target_modules=TARGETS, task_type="CAUSAL_LM"))

    def loss_fn(ids, labels):
        return model(input_ids=ids, labels=labels).loss
    return model, loss_fn


def worker(args) -> dict:
    """One side, one batch shape: timed steps; prints a JSON line."""
    from lora.finetune import data

    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    b, t = (int(x) for x in args.batch.split("x"))
    exs, source = examples(t, b * (args.warmup + args.steps), seed=1)
    model, loss_fn = build(args.worker, args.shape, device, dtype, args.quantize)
    model.train()
    if args.compile:
        model = torch.compile(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    vocab = SHAPES[args.shape]["vocab_size"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_built = rss_now()
    tokens, seconds = 0, 0.0
    for i in range(args.warmup + args.steps):
        ids, labels = data.collate(exs[i * b:(i + 1) * b])
        ids, labels = ids.remainder(vocab).to(device), labels.where(labels < 0, labels.remainder(vocab)).to(device)
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = loss_fn(ids, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i >= args.warmup:
            seconds += time.perf_counter() - t0
            tokens += sum(len(e["input_ids"]) for e in exs[i * b:(i + 1) * b])
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"side": args.worker, "batch": args.batch, "tokens_per_s": tokens / seconds, "peak_bytes": peak,
            "rss_after_build": rss_built, "data": source, "loss": float(loss)}


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", default="2x256", help="comma-separated BxT (T = cutoff_len)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per side; the best is reported")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--quantize", choices=["none", "nf4"], default="none",
                   help="nf4: a 4-bit base on both sides (QLoRA: minillama.nf4 vs bitsandbytes through transformers)")
    p.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0 = default)")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--worker", choices=["ours", "hf"], help=argparse.SUPPRESS)
    p.add_argument("--batch", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args)))
        return []
    rows = []
    base = [sys.executable, __file__, "--shape", args.shape, "--device", args.device, "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--threads", str(args.threads), "--quantize", args.quantize] \
        + ["--compile"] * args.compile
    for batch in args.batches.split(","):
        res: dict[str, dict] = {}
        for _ in range(args.repeats):  # sides alternate, best of the repeats: robust to a busy machine
            for side in ("ours", "hf"):
                proc = subprocess.run(base + ["--worker", side, "--batch", batch], capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"error: {side} worker failed for batch {batch}: {proc.stderr.strip().splitlines()[-1:]}")
                got = json.loads(proc.stdout.strip().splitlines()[-1])
                if side not in res or got["tokens_per_s"] > res[side]["tokens_per_s"]:
                    res[side] = got
        row = {"shape": args.shape, "device": args.device, "batch": batch, "quantize": args.quantize,
               "data": res["ours"]["data"],
               "ours_tokens_per_s": res["ours"]["tokens_per_s"], "hf_tokens_per_s": res["hf"]["tokens_per_s"],
               "speed_ratio": res["ours"]["tokens_per_s"] / res["hf"]["tokens_per_s"],
               "ours_peak_gib": res["ours"]["peak_bytes"] / 2**30, "hf_peak_gib": res["hf"]["peak_bytes"] / 2**30,
               "memory_ratio": res["ours"]["peak_bytes"] / res["hf"]["peak_bytes"]}
        rows.append(row)
        print(f"{args.shape} {args.device} batch {batch}: ours {row['ours_tokens_per_s']:.0f} tok/s, "
              f"transformers+peft {row['hf_tokens_per_s']:.0f} tok/s, ratio {row['speed_ratio']:.2f}x | "
              f"peak {'GPU memory' if args.device.startswith('cuda') else 'RSS'} ours {row['ours_peak_gib']:.2f} GiB, "
              f"theirs {row['hf_peak_gib']:.2f} GiB, ratio {row['memory_ratio']:.2f} ({row['data']})", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
