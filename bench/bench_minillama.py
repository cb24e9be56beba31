"""Throughput of minillama.Llama against transformers' LlamaForCausalLM: same config, same weights, same run.

Measures, for each implementation:
  * forward+backward tokens/s (cross-entropy loss on a [batch, seq] block; the training step's maths),
  * decode tokens/s (greedy `generate` of --new-tokens tokens after a --prompt-len prompt, KV cache on),
and prints the ratio minillama / transformers (> 1 means minillama is faster).

    python bench/bench_minillama.py                         # CPU, small config (default)
    python bench/bench_minillama.py --device cuda --dtype bfloat16 --preset 7b   # Llama-2-7B shape, GPU
    python bench/bench_minillama.py --preset 7b --layers 1 --tiny                # CPU smoke test of the 7b path
    add --cuda-graph to also time minillama's decoding replayed as CUDA graphs (bench/gpu_suite.py runs it on a GPU)

Both models share the same parameter tensors (no second copy), so the 7B comparison fits on one GPU.
Requires transformers (a test/benchmark-only reference library).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


import torch
from harness import save_results

from minillama import Llama, LlamaConfig

PRESETS = {
    "small": dict(vocab_size=32000, hidden_size=512, intermediate_size=1376, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=8, max_position_embeddings=4096),
    # Llama-2-7B, as in meta-llama/Llama-2-7b-hf/config.json.
    "7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
}
TINY = dict(hidden_size=256, intermediate_size=688, num_attention_heads=4, num_key_value_heads=4)


def build_models(args):
    """A random HF LlamaForCausalLM and a minillama.Llama aliasing the very same tensors."""
    import transformers

    spec = dict(PRESETS[args.preset])
    if args.tiny:
        spec.update(TINY)
    if args.layers:
        spec["num_hidden_layers"] = args.layers
    if args.kv_heads:
        spec["num_key_value_heads"] = args.kv_heads
    dtype = getattr(torch, args.dtype)
    hf_config = transformers.LlamaConfig(**spec, rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1,
                                         eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(args.device):
            torch.manual_seed(0)
            hf = transformers.LlamaForCausalLM(hf_config)
    finally:
        torch.set_default_dtype(previous)
    hf = hf.to(device=args.device, dtype=dtype).eval()
    hf.generation_config.eos_token_id = None  # always generate --new-tokens tokens, no EOS processors
    hf.generation_config.pad_token_id = 0
    with torch.device("meta"):
        ours = Llama(LlamaConfig.from_hf_dict(hf_config.to_dict()))
    ours.load_state_dict(hf.state_dict(), assign=True)
    ours.model.rotary_emb.reset_cache(device=args.device)
    return hf, ours.eval(), spec


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(fns: dict, device: str, repeats: int, warmup: int = 1) -> dict:
    """Median seconds of each function, timed in alternating order round after round, so that load from
    other processes (a shared CPU) hits every implementation alike.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for r in range(repeats):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for name in order:
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def train_step(model, logits_of, ids):
    """One forward+backward of the next-token loss; gradients are dropped afterwards."""
    def step():
        logits = logits_of(model, ids)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        for p in model.parameters():
            p.grad = None
    return step


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--preset", default="small", choices=sorted(PRESETS))
    p.add_argument("--layers", type=int, default=0, help="override the number of layers")
    p.add_argument("--kv-heads", type=int, default=0, help="override num_key_value_heads (GQA)")
    p.add_argument("--tiny", action="store_true", help="shrink the widths (smoke test of a preset)")
    p.add_argument("--batch", type=int, default=1, help="decode batch size")
    p.add_argument("--train-batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=128, help="forward+backward sequence length")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--cuda-graph", action="store_true",
                   help="also time minillama's static decoding step replayed as a CUDA graph (eager on CPU)")
    p.add_argument("--compile", action="store_true",
                   help="also time minillama's decoding with its forward torch.compile'd (timed after the others)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    hf, ours, spec = build_models(args)
    vocab = spec["vocab_size"]
    g = torch.Generator().manual_seed(0)
    results = {"device": args.device, "dtype": args.dtype, "preset": args.preset, "config": spec,
               "torch": torch.__version__}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()
    print(f"config: {spec} dtype={args.dtype} device={args.device} threads={torch.get_num_threads()}")

    if not args.skip_train:
        ids = torch.randint(3, vocab, (args.train_batch, args.seq), generator=g).to(args.device)
        hf.train(), ours.train()
        sec = interleaved({"transformers": train_step(hf, lambda m, x: m(x).logits, ids),
                           "minillama": train_step(ours, lambda m, x: m(x), ids)}, args.device, args.repeats)
        hf.eval(), ours.eval()
        t_hf, t_ours = ids.numel() / sec["transformers"], ids.numel() / sec["minillama"]
        results["train_tokens_per_s"] = {"transformers": t_hf, "minillama": t_ours, "ratio": t_ours / t_hf}
        print(f"forward+backward  [{args.train_batch}x{args.seq}]  transformers {t_hf:10.1f} tok/s   "
              f"minillama {t_ours:10.1f} tok/s   ratio {t_ours / t_hf:.2f}x")

    prompt = torch.randint(3, vocab, (args.batch, args.prompt_len), generator=g).to(args.device)
    n = args.new_tokens
    outputs = {}

    def run(name, fn):
        def call():
            outputs[name] = fn(prompt)
        return call

    fns = {"transformers": run("transformers", lambda x: hf.generate(
               x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False)),
           "minillama": run("minillama", lambda x: ours.generate(x, n, eos_id=None))}
    if args.cuda_graph:
        fns["cuda_graph"] = run("cuda_graph", lambda x: ours.generate(x, n, eos_id=None, cuda_graph=True))
    with torch.no_grad():
        sec = interleaved(fns, args.device, args.repeats)
    tps = {name: args.batch * n / s for name, s in sec.items()}
    d_hf, d_ours = tps["transformers"], tps["minillama"]
    out_hf, out_ours = outputs["transformers"], outputs["minillama"]
    if out_hf.shape != out_ours.shape:
        raise SystemExit(f"transformers generated {list(out_hf.shape)}, minillama {list(out_ours.shape)}")
    same = (out_hf == out_ours).float().mean().item()
    results["decode_tokens_per_s"] = {"transformers": d_hf, "minillama": d_ours, "ratio": d_ours / d_hf,
                                      "batch": args.batch, "new_tokens": n, "same_tokens_fraction": same}
    print(f"decode (greedy, batch {args.batch}, {n} new)  transformers {d_hf:10.1f} tok/s   "
          f"minillama {d_ours:10.1f} tok/s   ratio {d_ours / d_hf:.2f}x   (identical tokens: {same:.0%})")
    if args.cuda_graph:
        d_graph, out_graph = tps["cuda_graph"], outputs["cuda_graph"]
        same_graph = (out_graph == out_ours).float().mean().item()
        results["decode_tokens_per_s"].update(minillama_cuda_graph=d_graph, ratio_cuda_graph=d_graph / d_hf)
        print(f"decode with cuda_graph=True                  transformers {d_hf:10.1f} tok/s   "
              f"minillama {d_graph:10.1f} tok/s   ratio {d_graph / d_hf:.2f}x   "
              f"(identical to eager minillama: {same_graph:.0%})")
    if args.compile:
        eager_forward = ours.forward
        ours.forward = torch.compile(eager_forward, dynamic=True)
        with torch.no_grad():
            sec = interleaved({"compiled": run("compiled", lambda x: ours.generate(x, n, eos_id=None))}, args.device,
                              args.repeats, warmup=2)
        ours.forward = eager_forward
        d_comp = args.batch * n / sec["compiled"]
        same_comp = (outputs["compiled"] == out_ours).float().mean().item()
        results["decode_tokens_per_s"].update(minillama_compiled=d_comp, ratio_compiled=d_comp / d_hf)
        print(f"decode with torch.compile (timed after)     transformers {d_hf:10.1f} tok/s   "
              f"minillama {d_comp:10.1f} tok/s   ratio {d_comp / d_hf:.2f}x   "
              f"(identical to eager minillama: {same_comp:.0%})")
    return save_results(args.json, results)


if __name__ == "__main__":
    main()
