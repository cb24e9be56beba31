"""Every GPU measurement in one command (under 10 minutes on one H100/H200), written to one JSON file.

    python bench/gpu_suite.py                      # Llama-2-7B shapes, bf16, random weights, on cuda
    python bench/gpu_suite.py --tiny               # the same code paths on tiny shapes (CPU smoke run)

Parts, each in fresh processes so that one's memory never inflates another's peak:

1. train: one LoRA step (r 8, q/k/v/o) at 1 x 256 and 8 x 256 tokens, ours vs transformers + peft:
   tokens/s and peak memory (`bench_train.py`). Targets: >= 3x at 1 x 256, >= 1.8x at 8 x 256, with no
   more peak memory.
2. qlora: the same step on an NF4 base (ours) beside bf16 LoRA (ours) and peft + bitsandbytes 4-bit.
3. decode: greedy decoding at batch 1 (32-token prompt, 128 new tokens), minillama eager, torch.compile'd
   and replayed as CUDA graphs, vs transformers' `generate` (`bench_minillama.py`). Target: >= 4.5x.
4. evaluation: the generation stage's work, 2 x 120 answers of up to 256 tokens (batches of 16, an r-8
   adapter on the second pass), timed for ours; one batch also through transformers for the ratio.

Results: `bench/results/gpu_suite.json` (or --out), and a summary with each target's verdict.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TARGETS = {"train_1x256": 3.0, "train_8x256": 1.8, "decode_batch1": 4.5}


def run(cmd: list[str], timeout: float) -> tuple[int, str]:
    """Run a part; returns (exit status, its last output line or error)."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s"
    print(f"  ({time.perf_counter() - t0:.0f} s) {' '.join(cmd[:1])}", file=sys.stderr, flush=True)
    return proc.returncode, (proc.stdout if proc.returncode == 0 else proc.stderr.strip()[-2000:])


def part_train(args, out: dict, device: str, tiny: bool) -> None:
    shape, batches = ("small", "1x64,2x64") if tiny else ("7b", "1x256,8x256")
    tmp = HERE / "results" / "gpu_suite_train.json"
    cmd = [str(HERE / "bench_train.py"), "--shape", shape, "--device", device, "--batches", batches,
           "--steps", "2" if tiny else "6", "--warmup", "1" if tiny else "2", "--repeats", "1", "--out", str(tmp)]
    rc, text = run(cmd, args.part_timeout)
    out["train"] = json.loads(tmp.read_text()) if rc == 0 else {"error": text}


def part_decode(args, out: dict, device: str, tiny: bool) -> None:
    tmp = HERE / "results" / "gpu_suite_decode.json"
    cmd = [str(HERE / "bench_minillama.py"), "--device", device, "--skip-train", "--cuda-graph", "--compile",
           "--batch", "1", "--json", str(tmp)]
    cmd += (["--preset", "7b", "--tiny", "--layers", "1", "--prompt-len", "8", "--new-tokens", "8", "--repeats", "1"]
            if tiny else ["--preset", "7b", "--dtype", "bfloat16", "--prompt-len", "32", "--new-tokens", "128",
                          "--repeats", "3"])
    rc, text = run(cmd, args.part_timeout)
    out["decode"] = json.loads(tmp.read_text()) if rc == 0 else {"error": text}


def part_evaluation(args, out: dict, device: str, tiny: bool) -> None:
    tmp = HERE / "results" / "gpu_suite_eval.json"
    cmd = [str(HERE / "gpu_suite.py"), "--evaluation-worker", "--device", device, "--out", str(tmp)]
    rc, text = run(cmd + (["--tiny"] if tiny else []), args.part_timeout)
    out["evaluation"] = json.loads(tmp.read_text()) if rc == 0 else {"error": text}


def part_qlora(args, out: dict, device: str, tiny: bool) -> None:
    tmp = HERE / "results" / "gpu_suite_qlora.json"
    shape, batch = ("small", "1x64") if tiny else ("7b", "1x256")
    cmd = [str(HERE / "bench_train.py"), "--shape", shape, "--device", device, "--batches", batch, "--quantize",
           "nf4", "--steps", "2" if tiny else "6", "--warmup", "1" if tiny else "2", "--repeats", "1",
           "--out", str(tmp)]
    rc, text = run(cmd, args.part_timeout)
    out["qlora"] = json.loads(tmp.read_text()) if rc == 0 else {"error": text}


@torch.inference_mode()
def evaluation_worker(device: str, tiny: bool) -> dict:
    """2 x 120 answers of up to 256 new tokens (no EOS: random weights), batches of 16; one batch vs transformers."""
    import transformers

    import lora
    from minillama import Llama, LlamaConfig

    spec = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096)
    n_items, new, batch, prompt_len = 120, 256, 16, 120
    if tiny:
        spec.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=4)
        n_items, new, batch, prompt_len = 8, 8, 4, 12
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    hf_cfg = transformers.LlamaConfig(**spec, rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=0)
    with torch.device(device):
        torch.manual_seed(0)
        hf = transformers.LlamaForCausalLM(hf_cfg).to(dtype).eval()
    hf.generation_config.eos_token_id = None
    with torch.device("meta"):
        ours = Llama(LlamaConfig.from_hf_dict(hf_cfg.to_dict()))
    ours.load_state_dict(hf.state_dict(), assign=True)
    ours.model.rotary_emb.reset_cache(device=device)
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(3, spec["vocab_size"], (n_items, prompt_len), generator=g).to(device)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(fn) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    first = prompts[:batch]
    ours.generate(first[:1], 2, eos_id=None)  # warm-up
    t_hf = timed(lambda: hf.generate(first, attention_mask=torch.ones_like(first), max_new_tokens=new,
                                     do_sample=False))
    t_ours_batch = timed(lambda: ours.generate(first, new, eos_id=None))
    passes = {}
    for name in ("base", "finetuned"):
        if name == "finetuned":
            lora.apply_lora(ours, lora.LoraConfig(r=8, alpha=16, dropout=0.0))
            ours.to(device=device)
        passes[name] = timed(lambda: [ours.generate(prompts[i:i + batch], new, eos_id=None)
                                      for i in range(0, n_items, batch)])
    total = sum(passes.values())
    return {"items_per_model": n_items, "new_tokens": new, "batch": batch, "prompt_len": prompt_len,
            "seconds": passes, "seconds_total": total, "tokens_per_s": 2 * n_items * new / total,
            "one_batch_seconds": {"ours": t_ours_batch, "transformers": t_hf},
            "one_batch_ratio": t_hf / t_ours_batch}


def summary(results: dict) -> list[str]:
    lines = []
    for row in results.get("train", []) if isinstance(results.get("train"), list) else []:
        key = f"train_{row['batch']}"
        target = TARGETS.get(key)
        verdict = "" if target is None else (" PASS" if row["speed_ratio"] >= target and row["memory_ratio"] <= 1.0
                                             else " below target")
        lines.append(f"train {row['batch']}: {row['speed_ratio']:.2f}x transformers+peft tokens/s, peak memory "
                     f"{row['memory_ratio']:.2f}x" + (f" (target >= {target}x, <= 1.0x){verdict}" if target else ""))
    d = results.get("decode", {}).get("decode_tokens_per_s")
    if d:
        best = max(d["ratio"], d.get("ratio_cuda_graph", 0), d.get("ratio_compiled", 0))
        lines.append(f"decode batch 1: eager {d['ratio']:.2f}x, compiled {d.get('ratio_compiled', 0):.2f}x, "
                     f"CUDA graph {d.get('ratio_cuda_graph', 0):.2f}x transformers' generate (target >= "
                     f"{TARGETS['decode_batch1']}x){' PASS' if best >= TARGETS['decode_batch1'] else ' below target'}")
    e = results.get("evaluation", {})
    if "seconds_total" in e:
        lines.append(f"evaluation: 2 x {e['items_per_model']} answers x {e['new_tokens']} tokens in "
                     f"{e['seconds_total']:.1f} s ({e['tokens_per_s']:.0f} tok/s); one batch {e['one_batch_ratio']:.2f}x "
                     "transformers")
    q, bf16 = results.get("qlora"), {r["batch"]: r for r in results.get("train", []) if isinstance(r, dict)}
    if isinstance(q, list):
        for row in q:
            line = (f"qlora {row['batch']}: {row['speed_ratio']:.2f}x peft+bitsandbytes tokens/s, peak memory "
                    f"{row['memory_ratio']:.2f}x theirs ({row['ours_peak_gib']:.2f} GiB)")
            if row["batch"] in bf16:
                b = bf16[row["batch"]]
                line += (f"; vs our bf16 LoRA: {row['ours_tokens_per_s'] / b['ours_tokens_per_s']:.2f}x the speed, "
                         f"{row['ours_peak_gib'] / b['ours_peak_gib']:.2f}x the memory")
            lines.append(line)
    for name in ("train", "decode", "evaluation", "qlora"):
        if isinstance(results.get(name), dict) and "error" in results[name]:
            lines.append(f"{name}: FAILED: {results[name]['error'].splitlines()[-1:]}")
    return lines


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (or GPU): a smoke run of every part")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu (only with --tiny)")
    p.add_argument("--parts", default="train,qlora,decode,evaluation", help="comma-separated parts to run")
    p.add_argument("--part-timeout", type=float, default=300.0, help="seconds per part at most")
    p.add_argument("--out", type=Path, default=HERE / "results" / "gpu_suite.json")
    p.add_argument("--evaluation-worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.evaluation_worker:
        result = evaluation_worker(device, args.tiny)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        return result
    if device == "cpu" and not args.tiny:
        sys.exit("error: no CUDA GPU: the suite measures 7B shapes on a GPU (use --tiny for a CPU smoke run)")
    (HERE / "results").mkdir(exist_ok=True)
    results: dict = {"device": device, "tiny": args.tiny, "torch": torch.__version__,
                     "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None}
    parts = {"train": part_train, "qlora": part_qlora, "decode": part_decode, "evaluation": part_evaluation}
    t0 = time.perf_counter()
    for name in args.parts.split(","):
        print(f"[gpu_suite] {name} ...", file=sys.stderr, flush=True)
        parts[name](args, results, device, args.tiny)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    results["summary"] = summary(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(results["summary"]) + f"\nall parts in {results['wall_s']:.0f} s; results in {args.out}")
    return results


if __name__ == "__main__":
    main()
