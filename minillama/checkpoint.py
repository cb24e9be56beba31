"""Loading and saving Hugging Face Llama checkpoints (safetensors only, single file or sharded).

Loading builds the model on the meta device (no memory), reads each tensor once into its final dtype
and device, and hands them over with `load_state_dict(assign=True)`: no float32 copy, no second copy.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from .config import LlamaConfig
from .errors import MiniLlamaError
from .progress import Progress
from .safetensors_io import TensorInfo, read_header, read_tensor

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
HUB_PATTERNS = ["config.json", "generation_config.json", "tokenizer.model", "*.safetensors",
                "*.safetensors.index.json"]
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")  # a buffer some old checkpoints saved; recomputed here


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """`torch.bfloat16`, "bfloat16", "bf16" ... -> torch dtype; None or "auto" keeps the stored dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise MiniLlamaError(f"dtype {dtype} is not supported (float32, bfloat16 or float16)")
        return dtype
    if dtype == "auto":
        return None
    if dtype not in _DTYPES:
        raise MiniLlamaError(f"dtype {dtype!r} is not supported (float32, bfloat16 or float16)")
    return _DTYPES[dtype]


def resolve_model_dir(path_or_id: str | Path) -> Path:
    """A local folder, or a Hub repo id downloaded (config, tokenizer, safetensors only) to the HF cache.

    `huggingface_hub` honours `HF_TOKEN`, `HF_HUB_OFFLINE` and `HF_HOME`/`HF_HUB_CACHE`.
    """
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    text = str(path_or_id)
    if path.exists():
        raise MiniLlamaError(f"{text}: is a file; expected a model folder or a Hub repo id")
    looks_local = text.startswith((".", "/", "~")) or text.count("/") != 1 or os.sep != "/" and os.sep in text
    if looks_local:
        raise MiniLlamaError(f"{text}: model folder not found")
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(repo_id=text, allow_patterns=HUB_PATTERNS))
    except Exception as exc:  # any Hub failure (offline, gated, not found, HTTP) becomes one line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise MiniLlamaError(f"{text}: not a local folder, and downloading it from the Hugging Face Hub "
                             f"failed ({type(exc).__name__}: {first})") from None


def weight_index(model_dir: Path) -> dict[str, TensorInfo]:
    """Map every tensor name of the checkpoint in `model_dir` to where it is stored.

    Raises:
        MiniLlamaError: No safetensors weights (pickle-only checkpoints are refused), a broken index,
            or a missing/truncated/corrupt shard.
    """
    index_path = model_dir / INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
            raise MiniLlamaError(f"{index_path}: not a valid safetensors index (no weight_map)") from None
        infos: dict[str, TensorInfo] = {}
        for shard in sorted(set(weight_map.values())):
            if not isinstance(shard, str) or Path(shard).name != shard:
                raise MiniLlamaError(f"{index_path}: shard name {shard!r} is not a file name in this folder")
            shard_path = model_dir / shard
            if not shard_path.is_file():
                raise MiniLlamaError(f"{shard_path}: shard listed in {INDEX_FILE} is missing")
            header = read_header(shard_path)
            for name, file in weight_map.items():
                if file == shard:
                    if name not in header:
                        raise MiniLlamaError(f"{shard_path}: tensor {name!r} listed in {INDEX_FILE} is not in it")
                    infos[name] = header[name]
        return infos
    if (model_dir / SINGLE_FILE).is_file():
        return read_header(model_dir / SINGLE_FILE)
    pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise MiniLlamaError(f"{model_dir}: only pickle checkpoint(s) {', '.join(pickles)}: minillama reads "
                             "safetensors only, because unpickling a file can run arbitrary code (convert it "
                             "with transformers' save_pretrained(safe_serialization=True))")
    raise MiniLlamaError(f"{model_dir}: no {SINGLE_FILE} or {INDEX_FILE}")


def expected_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors a checkpoint of `model` holds (lm_head omitted when tied)."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    return shapes


def check_names(source: str, found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]],
                tied: bool) -> None:
    """Raise one line naming every missing, unexpected and mis-shaped tensor."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected and not _IGNORED.match(k)
                  and not (tied and k == "lm_head.weight")]
    wrong = [f"{k} {list(found[k])} != expected {list(v)}" for k, v in expected.items()
             if k in found and tuple(found[k]) != v]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    if wrong:
        problems.append(f"shape mismatch: {'; '.join(wrong)}")
    if problems:
        raise MiniLlamaError(f"{source}: checkpoint does not match config.json: {' | '.join(problems)}")


def load_pretrained(path_or_id: str | Path, dtype: torch.dtype | str | None = None,
                    device: torch.device | str | None = None):
    """Build a `Llama` from a Hugging Face checkpoint.

    Args:
        path_or_id: A local folder (config.json + model.safetensors or shards + index) or a Hub repo id.
        dtype: float32 / bfloat16 / float16 (a torch dtype or its name); None keeps the stored dtype.
        device: Where the weights go (default CPU). Tensors are moved one at a time.

    Returns:
        The model in eval mode.

    Raises:
        MiniLlamaError: Any unusable input, in one line naming the file and the problem.
    """
    from .model import Llama

    target = resolve_dtype(dtype)
    device = torch.device(device) if device is not None else torch.device("cpu")
    model_dir = resolve_model_dir(path_or_id)
    config = LlamaConfig.from_file(model_dir / "config.json")
    infos = weight_index(model_dir)
    with torch.device("meta"):
        model = Llama(config)
    tied = config.tie_word_embeddings
    expected = expected_shapes(model)
    check_names(str(model_dir), {k: v.shape for k, v in infos.items()}, expected, tied)

    state, handles = {}, {}
    total = sum(infos[k].end - infos[k].start for k in expected)
    try:
        with Progress(total=total, desc=f"loading {model_dir.name}", unit="B", disable=total < 2**28) as bar:
            for name in expected:
                info = infos[name]
                f = handles.get(info.path) or handles.setdefault(info.path, open(info.path, "rb"))
                state[name] = read_tensor(f, info, dtype=target, device=device)
                bar.update(info.end - info.start)
    finally:
        for f in handles.values():
            f.close()
    model.load_state_dict(state, strict=False, assign=True)  # names were checked above
    model.tie_weights()
    model.model.rotary_emb.reset_cache(config.max_position_embeddings, device=device)
    model.config = config.replace(torch_dtype=str(model.dtype).removeprefix("torch."))
    return model.eval()


def parse_size(size: int | str) -> int:
    """ "2GB" -> 2*10**9, "500MiB" -> 500*2**20, 1000 -> 1000 (Hugging Face's convention)."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", str(size), flags=re.IGNORECASE)
    if not m:
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
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        reference = type(model)(model.config)
    expected = expected_shapes(reference)
    state = model.state_dict()
    extra = [k for k in state if k not in expected and not (model.config.tie_word_embeddings and k == "lm_head.weight")]
    if extra:
        raise MiniLlamaError(f"{out}: the model has parameters a Llama checkpoint cannot hold "
                             f"({', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}); merge LoRA first")
    tensors = {k: state[k] for k in expected}
    limit = parse_size(max_shard_size)
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
    for shard, fname in Progress(list(zip(shards, names)), desc="saving", unit="shard", disable=n < 4):
        cpu = {k: v.detach().to("cpu").contiguous() for k, v in shard.items()}
        _atomic(out / fname, lambda tmp: save_file(cpu, str(tmp), metadata={"format": "pt"}))
    if n > 1:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
                 "weight_map": {k: fname for shard, fname in zip(shards, names) for k in shard}}
        _atomic_text(out / INDEX_FILE, json.dumps(index, indent=2) + "\n")
    stale = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$")
    for p in out.iterdir():
        if stale.fullmatch(p.name) and p.name not in names and not (n > 1 and p.name == INDEX_FILE):
            p.unlink()
    dtype = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    config = model.config.to_hf_dict() | {"torch_dtype": dtype}
    _atomic_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    gen = {"bos_token_id": model.config.bos_token_id, "eos_token_id": model.config.eos_token_id}
    if model.config.pad_token_id is not None:
        gen["pad_token_id"] = model.config.pad_token_id
    _atomic_text(out / "generation_config.json", json.dumps(gen, indent=2) + "\n")
    return out


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
