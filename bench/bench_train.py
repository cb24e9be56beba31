"""Training throughput and peak memory: scripts/train.py's LoRA step vs transformers + peft, same run.

Both sides get the same weights (random, seeded by parameter name, for a `--shape`; a real checkpoint's
for `--model`, e.g. SmolLM2-135M-Instruct), the same LoRA config (`--setting`: paper = r 8, alpha 16,
dropout 0.05 on q,k,v,o, the paper preset's; preset = r 16, alpha 32, no dropout, on all seven projections,
the smollm2 preset's), the same batches (GenMedGPT-5k records in the alpaca template, cut at 256 tokens: real
lengths, right-padded per batch; tokenised by the Llama-2 tokenizer, or by the `--model` folder's own through
transformers' AutoTokenizer) and the same step: forward, Eq. 3 cross-entropy over response tokens, backward, AdamW on
the LoRA weights. On GPU both run bf16 weights + float32 LoRA under bf16 autocast (HF Trainer's
`bf16=True`); on CPU float32, or bf16 autocast on both sides with `--autocast`.

Each side runs in its own subprocess, so peak memory is its own: `torch.cuda.max_memory_allocated`
on GPU, peak RSS on CPU. Tokens/s counts real (non-pad) tokens per second of timed steps; the sides
alternate over `--repeats` fresh processes (each running the timed batches `--passes` times) and each
batch's fastest step is kept (a shared machine's background load only ever slows a step down).

Model FLOPs/s (`--mfu`, CPU): the step's useful work divided by its time, as a share of the peak of one
large matmul timed in the same dtype on the same threads. The work of one sequence of T real tokens is
`4 N T + 3 A + 6 N_lora T`: N = the parameters of every matmul (q,k,v,o,gate,up,down and lm_head; 2 N T
forward, 2 N T backward for the activations' gradients, none for the frozen weights' own), A = the
causal attention forward `L x 2 x 2 x H x hd x T(T+1)/2` (scores and weighted sum; backward twice that),
and 6 N_lora T the LoRA matrices' forward, input and weight gradients (Kaplan et al. 2020's 6N rule).

    python bench/bench_train.py                           # CPU, small shape, batch 2 x 256
    python bench/bench_train.py --model /work/ref/smollm2-hf --setting paper --mfu    # the real small model
    python bench/bench_train.py --model /work/ref/smollm2-hf --setting preset --packing --autocast
    python bench/bench_train.py --shape 7b --dtype bfloat16 --batches 1x256 --steps 1 --warmup 0 --repeats 1
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
from harness import save_results

SHARED = next((d for d in (REPO.parent / "shared" / "data", REPO.parents[1] / "shared" / "data") if d.is_dir()),
              REPO.parent / "shared" / "data")  # beside the checkout, or beside a worktree's folder
SHAPES = {  # HF LlamaConfig fields; "7b" is Llama-2-7B (Touvron et al. 2023, Table 1)
    "tiny": dict(vocab_size=1024, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=4),
    "small": dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                  num_attention_heads=8, num_key_value_heads=8),
    "7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
SETTINGS = {  # LoRA config and default batches
    "paper": dict(r=8, alpha=16, dropout=0.05, targets=TARGETS, batches="1x256"),  # the paper preset (TrainConfig)
    "preset": dict(r=16, alpha=32, dropout=0.0, targets=TARGETS + ["gate_proj", "up_proj", "down_proj"],
                   batches="4x256"),  # the smollm2 preset
}


class AutoTok:
    """transformers' AutoTokenizer of a model folder behind the project's `encode(text, bos, eos)`."""

    def __init__(self, folder: str):
        import transformers
        self.tok = transformers.AutoTokenizer.from_pretrained(folder)
        self.bos_id, self.eos_id = self.tok.bos_token_id, self.tok.eos_token_id

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        return [self.bos_id] * bos + self.tok.encode(text, add_special_tokens=False) + [self.eos_id] * eos


def examples(cutoff: int, n: int, seed: int = 0, model: str | None = None,
             data_file: Path = SHARED / "genmedgpt-5k.json") -> tuple[list[dict], str]:
    """Tokenised training examples with real lengths, and where they came from (`model`: tokenised by that
    folder's tokenizer)."""
    from lora.finetune import data, demo_data
    from lora.finetune.records import load_records

    tok_file = SHARED / "llama2-tokenizer.model"
    if model and data_file.is_file():
        tok, (records, _) = AutoTok(model), load_records(data_file)
        source, recs = f"{data_file.name} + {Path(model).name} tokenizer", list(records.values())
    elif tok_file.is_file() and data_file.is_file():
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


def build(side: str, args, device: torch.device, dtype: torch.dtype):
    """(model with LoRA, step_fn(tensors) -> loss tensor) for "ours" or "hf". The weights are `args.model`'s
    (a HF folder) or random ones of `args.shape`; with `args.quantize == "nf4"` the frozen base is 4-bit NF4
    (ours: minillama.nf4; theirs: bitsandbytes through transformers, as QLoRA users do)."""
    setting = dict(SETTINGS[args.setting])
    if args.dropout is not None:
        setting["dropout"] = args.dropout
    if side == "ours":
        import lora
        from minillama import Llama, LlamaConfig
        from lora.finetune.loss import SummedNLL

        if args.model:
            model = Llama.from_pretrained(args.model, dtype=dtype, device=device,
                                          quantize=None if args.quantize == "none" else args.quantize)
        else:
            shape = SHAPES[args.shape]
            with torch.device("meta"):
                model = Llama(LlamaConfig(**shape, head_dim=shape["hidden_size"] // shape["num_attention_heads"]))
            model = model.to(dtype).to_empty(device=device)  # allocate in the final dtype only
            init_weights(model, 0)
            model.model.rotary_emb.reset_cache(device=device)
            if args.quantize == "nf4":
                from minillama.nf4 import quantize_model
                quantize_model(model, compute_dtype=dtype)
        lora.apply_lora(model, lora.LoraConfig(r=setting["r"], alpha=setting["alpha"], dropout=setting["dropout"],
                                               target_modules=tuple(setting["targets"])))
        if args.checkpointing:
            model.gradient_checkpointing_enable()
        loss_module = SummedNLL(model, "token")

        def loss_fn(tensors):
            return loss_module(*tensors) / (tensors[1][:, 1:] != -100).sum()
        return loss_module, loss_fn
    import peft
    import transformers

    if args.model:
        bnb = None if args.quantize == "none" else transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, quantization_config=bnb,
                                                                  device_map={"": str(device)})
    else:
        config = transformers.LlamaConfig(**SHAPES[args.shape], max_position_embeddings=4096, rms_norm_eps=1e-5)
        with torch.device("meta"):
            model = transformers.LlamaForCausalLM(config)
        model = model.to(dtype).to_empty(device=device)  # allocate in the final dtype only
        init_weights(model, 0)
        with torch.device(device):  # to_empty left inv_freq uninitialised: rebuild it
            model.model.rotary_emb = type(model.model.rotary_emb)(config=config)
        if args.quantize == "nf4":  # bitsandbytes quantises while loading: go through a saved copy
            import tempfile
            with tempfile.TemporaryDirectory() as tmp:
                model.save_pretrained(tmp)
                del model
                bnb = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
                model = transformers.LlamaForCausalLM.from_pretrained(tmp, quantization_config=bnb, dtype=dtype,
                                                                      device_map={"": str(device)})
    model = peft.get_peft_model(model, peft.LoraConfig(r=setting["r"], lora_alpha=setting["alpha"],
                                                       lora_dropout=setting["dropout"],
                                                       target_modules=setting["targets"],
                                                       task_type="CAUSAL_LM"))
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def loss_fn(tensors):
        return model(input_ids=tensors[0], labels=tensors[1]).loss
    return model, loss_fn


def step_flops(lengths: list[int], config, n_lora: int) -> float:
    """The module docstring's model FLOPs of one step on sequences of `lengths` real tokens."""
    d, hd, layers = config.hidden_size, config.head_dim, config.num_hidden_layers
    heads, kv, ffn = config.num_attention_heads, config.num_key_value_heads, config.intermediate_size
    n = layers * (2 * d * heads * hd + 2 * d * kv * hd + 3 * d * ffn) + d * config.vocab_size
    attention = sum(layers * 2 * 2 * heads * hd * t * (t + 1) / 2 for t in lengths)
    return sum(4 * n * t + 6 * n_lora * t for t in lengths) + 3 * attention


def matmul_peak(dtype: torch.dtype, size: int = 2048, seconds: float = 3.0) -> float:
    """FLOP/s of a `size`-square matmul in `dtype` on this process's threads (best of repeated runs)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    best, t_end = 0.0, time.perf_counter() + seconds
    torch.mm(a, b)
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size ** 3 / (time.perf_counter() - t0))
    return best


def worker(args) -> dict:
    """One side, one batch shape: timed steps; prints a JSON line."""
    from lora.finetune import data

    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = {"auto": torch.bfloat16 if device.type == "cuda" else torch.float32, "float32": torch.float32,
             "bfloat16": torch.bfloat16}[args.dtype]
    autocast = device.type == "cuda" and dtype == torch.bfloat16 or args.autocast
    b, t = (int(x) for x in args.batch.split("x"))
    exs, source = examples(t, b * (args.warmup + args.steps), seed=1, model=args.model, data_file=Path(args.data))
    if args.group_by_length:  # HF's group_by_length: batches of similar lengths, taken in a random order
        by_length = sorted(exs, key=lambda e: len(e["input_ids"]))
        batches = [by_length[i:i + b] for i in range(0, len(by_length), b)]
        random.Random(0).shuffle(batches)
        exs = [e for batch in batches for e in batch]
    model, loss_fn = build(args.worker, args, device, dtype)
    model.train()
    if args.compile:
        model = torch.compile(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    config = (model.lm if args.worker == "ours" else model).config
    vocab = config.vocab_size
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_built = rss_now()
    peak_flops = matmul_peak(torch.bfloat16 if autocast else dtype) if args.mfu and device.type == "cpu" else None
    step_seconds = [float("inf")] * args.steps  # the best time of each timed batch over --passes
    step_tokens = [sum(len(e["input_ids"]) for e in exs[(args.warmup + j) * b:(args.warmup + j + 1) * b])
                   for j in range(args.steps)]
    step_flops_ = [step_flops([len(e["input_ids"]) for e in exs[(args.warmup + j) * b:(args.warmup + j + 1) * b]],
                              config, sum(p.numel() for p in params)) for j in range(args.steps)]
    order = list(range(args.warmup)) + list(range(args.warmup, args.warmup + args.steps)) * args.passes
    for i in order:
        mb = exs[i * b:(i + 1) * b]
        tensors = list(data.micro_batch(mb, args.packing and args.worker == "ours", t))  # rows of <= T tokens
        tensors[0] = tensors[0].remainder(vocab)
        tensors[1] = tensors[1].where(tensors[1] < 0, tensors[1].remainder(vocab))
        tensors = [x.to(device) for x in tensors]
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_fn(tensors)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i >= args.warmup:
            step_seconds[i - args.warmup] = min(step_seconds[i - args.warmup], time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"side": args.worker, "batch": args.batch, "step_seconds": step_seconds, "step_tokens": step_tokens,
            "step_flops": step_flops_, "peak_bytes": peak, "matmul_peak_flops_per_s": peak_flops,
            "rss_after_build": rss_built, "data": source, "loss": float(loss)}


def best_of(runs: list[dict]) -> dict:
    """One side's runs combined: each timed batch at its fastest over the runs (a shared machine's load only
    ever slows a step down), the lowest peak memory."""
    seconds = [min(s) for s in zip(*(r["step_seconds"] for r in runs))]
    tokens, flops = runs[0]["step_tokens"], runs[0]["step_flops"]
    return {"tokens_per_s": sum(tokens) / sum(seconds), "seconds_per_step": sum(seconds) / len(seconds),
            "model_flops_per_s": sum(flops) / sum(seconds), "peak_bytes": min(r["peak_bytes"] for r in runs),
            "data": runs[0]["data"]}


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="small", help="random weights of this shape")
    p.add_argument("--model", help="a HF Llama folder (e.g. /work/ref/smollm2-hf): its weights and tokenizer "
                                   "instead of --shape")
    p.add_argument("--data", default=str(SHARED / "genmedgpt-5k.json"), help="the records to train on (JSON)")
    p.add_argument("--setting", choices=sorted(SETTINGS), default="paper",
                   help="LoRA config (and default --batches): paper = r 8 on q,k,v,o at 1x256; preset = r 16 on "
                        "all seven projections at 4x256")
    p.add_argument("--dropout", type=float, help="LoRA dropout on both sides (default: the --setting's, 0.05 for "
                   "paper, 0 for preset); on a CPU its mask costs a serial RNG draw per input element")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="the weights' dtype (auto: bf16 on GPU, float32 on CPU)")
    p.add_argument("--autocast", action="store_true", help="bf16 autocast on both sides (also on CPU)")
    p.add_argument("--packing", action="store_true", help="ours packs each batch's examples into rows (--packing)")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing on both sides")
    p.add_argument("--group-by-length", action="store_true", help="batches of similar lengths on both sides")
    p.add_argument("--batches", help="comma-separated BxT (T = cutoff_len; default: the --setting's)")
    p.add_argument("--steps", type=int, default=4, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--passes", type=int, default=1, help="times each worker runs the timed steps (best of each)")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per side; the best is reported")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--quantize", choices=["none", "nf4"], default="none",
                   help="nf4: a 4-bit base on both sides (QLoRA: minillama.nf4 vs bitsandbytes through transformers)")
    p.add_argument("--threads", type=int, default=0, help="torch threads on CPU (0 = default)")
    p.add_argument("--mfu", action="store_true", help="also time a large matmul (CPU) and print model FLOPs/s "
                                                      "as a share of it")
    p.add_argument("--out", help="also write the results as JSON here")
    p.add_argument("--worker", choices=["ours", "hf"], help=argparse.SUPPRESS)
    p.add_argument("--batch", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(args)))
        return []
    if args.model and not (Path(args.model) / "config.json").is_file():
        sys.exit(f"error: --model {args.model}: no config.json there (give a Hugging Face model folder)")
    name = Path(args.model).name if args.model else args.shape
    flags = ["--compile"] * args.compile + ["--autocast"] * args.autocast + ["--packing"] * args.packing \
        + ["--checkpointing"] * args.checkpointing + ["--group-by-length"] * args.group_by_length \
        + ["--mfu"] * args.mfu + ["--data", args.data] + ["--model", args.model] * bool(args.model)
    base = [sys.executable, __file__, "--shape", args.shape, "--device", args.device, "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--passes", str(args.passes), "--threads", str(args.threads), "--quantize", args.quantize,
            "--setting", args.setting, "--dtype", args.dtype] + flags \
        + ["--dropout", str(args.dropout)] * (args.dropout is not None)
    rows = []
    for batch in (args.batches or SETTINGS[args.setting]["batches"]).split(","):
        runs: dict[str, list] = {"ours": [], "hf": []}
        for _ in range(args.repeats):  # sides alternate, best of the repeats: robust to a busy machine
            for side in ("ours", "hf"):
                proc = subprocess.run(base + ["--worker", side, "--batch", batch], capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"error: {side} worker failed for batch {batch}: {proc.stderr.strip().splitlines()[-1:]}")
                runs[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        res = {side: best_of(r) for side, r in runs.items()}
        # the best matmul any worker timed (--mfu): the machine's, not one moment's
        peak = max(r["matmul_peak_flops_per_s"] or 0 for r in runs["ours"] + runs["hf"]) or None
        dropout = SETTINGS[args.setting]["dropout"] if args.dropout is None else args.dropout
        row = {"model": name, "shape": args.shape, "setting": args.setting, "device": args.device, "batch": batch,
               "lora_dropout": dropout,
               "quantize": args.quantize, "flags": flags[:len(flags) - 2 - 2 * bool(args.model)],
               "data": res["ours"]["data"],
               "ours_tokens_per_s": res["ours"]["tokens_per_s"], "hf_tokens_per_s": res["hf"]["tokens_per_s"],
               "speed_ratio": res["ours"]["tokens_per_s"] / res["hf"]["tokens_per_s"],
               "ours_seconds_per_step": res["ours"]["seconds_per_step"],
               "hf_seconds_per_step": res["hf"]["seconds_per_step"],
               "ours_peak_gib": res["ours"]["peak_bytes"] / 2**30, "hf_peak_gib": res["hf"]["peak_bytes"] / 2**30,
               "memory_ratio": res["ours"]["peak_bytes"] / res["hf"]["peak_bytes"],
               "ours_model_flops_per_s": res["ours"]["model_flops_per_s"],
               "hf_model_flops_per_s": res["hf"]["model_flops_per_s"], "matmul_peak_flops_per_s": peak}
        rows.append(row)
        print(f"{name} {args.setting} {args.device} batch {batch} dropout {dropout:g} {' '.join(row['flags'])}: "
              f"ours {row['ours_tokens_per_s']:.0f} tok/s ({row['ours_seconds_per_step']:.2f} s/step), "
              f"transformers+peft {row['hf_tokens_per_s']:.0f} tok/s ({row['hf_seconds_per_step']:.2f} s/step), "
              f"ratio {row['speed_ratio']:.2f}x | peak {'GPU memory' if args.device.startswith('cuda') else 'RSS'} "
              f"ours {row['ours_peak_gib']:.2f} GiB, theirs {row['hf_peak_gib']:.2f} GiB, ratio "
              f"{row['memory_ratio']:.2f} ({row['data']})", flush=True)
        if peak:
            print(f"  model FLOPs/s (peak: a 2048^3 matmul, {peak / 1e9:.1f} GFLOP/s): ours {row['ours_model_flops_per_s'] / 1e9:.1f} G = "
                  f"{row['ours_model_flops_per_s'] / peak:.0%} of the matmul peak, theirs "
                  f"{row['hf_model_flops_per_s'] / 1e9:.1f} G = {row['hf_model_flops_per_s'] / peak:.0%}", flush=True)
    save_results(args.out, rows, indent=1)
    return rows


if __name__ == "__main__":
    main()
