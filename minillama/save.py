"""Saving a Llama in Hugging Face's checkpoint layout (config.json + safetensors, single file or shards)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from tqdm import tqdm

from plumbing.durable import replace_atomic, write_text_atomic

from .errors import MiniLlamaError, check_path
from .load import INDEX_FILE, SINGLE_FILE, expected_shapes
from .safetensors_io import save_file


def parse_size(size: int | str) -> int:
    """ "2GB" -> 2*10**9, "500MiB" -> 500*2**20, 1000 -> 1000 (Hugging Face's convention)."""
    if isinstance(size, int) and not isinstance(size, bool):
        if size < 1:
            raise MiniLlamaError(f"max_shard_size must be at least 1 byte, got {size}")
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", str(size), flags=re.IGNORECASE)
    if not m or not isinstance(size, str) or float(m.group(1)) == 0:
        raise MiniLlamaError(f"max_shard_size {size!r} is not a size like '2GB' or '500MB'")
    unit = (m.group(2) or "B").upper()
    scale = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}[unit]
    return int(float(m.group(1)) * scale)


def save_pretrained(model, out_dir: str | Path, max_shard_size: int | str = "2GB") -> Path:
    """Write `model` in Hugging Face's layout, loadable by transformers and by `load_pretrained`.

    Writes config.json, generation_config.json and model.safetensors, or (when the weights exceed
    `max_shard_size`) model-0000i-of-0000n.safetensors shards plus model.safetensors.index.json. Every
    file is written to a temporary name and renamed, so an interrupted save leaves no half file; weight
    files of an earlier save in the same folder that the new one does not use are removed (as HF does).

    Raises:
        MiniLlamaError: The model holds parameters that are not Llama's (e.g. unmerged LoRA weights).
    """
    check_path(out_dir, "save_pretrained out_dir")
    out = Path(out_dir)
    with torch.device("meta"):
        reference = type(model)(model.config)
    expected = expected_shapes(reference)
    state = model.state_dict()
    tied = model.config.tie_word_embeddings
    extra = [k for k in state if k not in expected and not (tied and k == "lm_head.weight")]
    if extra:
        raise MiniLlamaError(f"{out}: the model has parameters a Llama checkpoint cannot hold "
                             f"({', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}); {_lora_advice(model)}")
    tensors = {k: state[k] for k in expected}
    limit = parse_size(max_shard_size)
    out.mkdir(parents=True, exist_ok=True)  # only once the input is known to be good
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    n = len(shards)
    names = [SINGLE_FILE] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    for shard, fname in tqdm(list(zip(shards, names)), desc="saving", unit="shard", disable=n < 4):
        cpu = {k: v.detach().to("cpu").contiguous() for k, v in shard.items()}
        replace_atomic(out / fname, lambda tmp: save_file(cpu, str(tmp), metadata={"format": "pt"}))
    if n > 1:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
                 "weight_map": {k: fname for shard, fname in zip(shards, names) for k in shard}}
        write_text_atomic(out / INDEX_FILE, json.dumps(index, indent=2) + "\n")
    stale = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$")
    for p in out.iterdir():
        if stale.fullmatch(p.name) and p.name not in names and not (n > 1 and p.name == INDEX_FILE):
            p.unlink()
    dtype = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    config = model.config.to_hf_dict() | {"torch_dtype": dtype}
    write_text_atomic(out / "config.json", json.dumps(config, indent=2) + "\n")
    eos = list(model.config.eos_token_ids)  # Llama-3 Instruct: several (generation stops at any)
    gen = {"bos_token_id": model.config.bos_token_id, "eos_token_id": eos[0] if len(eos) == 1 else (eos or None)}
    if model.config.pad_token_id is not None:
        gen["pad_token_id"] = model.config.pad_token_id
    write_text_atomic(out / "generation_config.json", json.dumps(gen, indent=2) + "\n")
    return out


def _lora_advice(model) -> str:
    """What to do about LoRA layers left in `model`: merged-but-wrapped ones still need unloading; 4-bit
    (NF4) layers need dequantising."""
    if any(type(m).__name__ == "NF4Linear" for m in model.modules()):
        return ("the model holds 4-bit NF4 layers; merge LoRA (lora.merge_lora) and dequantise them first "
                "(minillama.nf4.dequantize_model), or use `python -m lora merge --quantize nf4`")
    wrapped = [m for m in model.modules() if hasattr(m, "lora_A") and hasattr(m, "merged")]
    if wrapped and all(m.merged for m in wrapped):
        return ("the LoRA layers are merged but still wrapped (merge_lora(..., unload=False)); call "
                "lora.merge_lora(model) (unload=True) before saving")
    return "merge LoRA first"
