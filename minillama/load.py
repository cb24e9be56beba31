"""Loading Hugging Face Llama checkpoints (safetensors only, single file or sharded) and llama.cpp GGUF files
(`gguf.py`); saving is `save.py`.

Loading builds the model on the meta device (no memory), reads each tensor once into its final dtype
and device, and hands them over with `load_state_dict(assign=True)`: no float32 copy, no second copy.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from tqdm import tqdm

from .config import LlamaConfig
from .errors import MiniLlamaError, check_path
from .gguf import hf_index, hf_tensor, is_gguf, llama_config, read_gguf
from .hub import download_model, is_hub_id
from .nf4.convert import quantizable_names, release_freed_host_memory, set_module
from .nf4.linear import NF4Linear
from .safetensors_io import TensorInfo, read_header, read_tensor

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
HUB_PATTERNS = ["config.json", "generation_config.json", "tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "*.safetensors", "*.safetensors.index.json"]
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
           "float64": torch.float64, "fp64": torch.float64, "double": torch.float64}
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")  # a buffer some old checkpoints saved; recomputed here


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """`torch.bfloat16`, "bfloat16", "bf16" ... -> torch dtype; None or "auto" keeps the stored dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16, torch.float64):
            raise MiniLlamaError(f"dtype {dtype} is not supported (float32, bfloat16, float16 or float64)")
        return dtype
    if dtype == "auto":
        return None
    if dtype not in _DTYPES:
        raise MiniLlamaError(f"dtype {dtype!r} is not supported (float32, bfloat16, float16 or float64)")
    return _DTYPES[dtype]


def resolve_model_dir(path_or_id: str | Path) -> Path:
    """A local folder, a local `.gguf` file (returned as is), or a Hub repo id downloaded (config, tokenizer,
    safetensors only) to the HF cache.

    `huggingface_hub` honours `HF_TOKEN`, `HF_HUB_OFFLINE` and `HF_HOME`/`HF_HUB_CACHE`.
    """
    check_path(path_or_id, "model path_or_id")
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        _refuse_adapter_dir(path)
        return path
    text = str(path_or_id)
    if is_gguf(path):
        return path
    if path.exists():
        raise MiniLlamaError(f"{text}: is a file; expected a model folder, a .gguf file or a Hub repo id")
    if path.suffix.lower() == ".gguf":
        raise MiniLlamaError(f"{text}: GGUF file not found")
    if not is_hub_id(text):
        raise MiniLlamaError(f"{text}: model folder not found")
    return download_model(text, HUB_PATTERNS)


def _refuse_adapter_dir(path: Path) -> None:
    """A PEFT LoRA adapter folder (adapter_config.json, no config.json) is not a model: say what to pass."""
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        raise MiniLlamaError(f"{path}: is a LoRA adapter folder (adapter_config.json, no config.json), not a "
                             "model; pass the base model, or merge the adapter into it first with "
                             f"`python -m lora merge --base BASE --adapter {path} --out DIR`")


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


def _nf4_weights(model) -> dict:
    """{checkpoint key of each weight QLoRA stores in NF4: a function that quantises it into the model}."""
    def replacer(name: str):
        def put(weight: torch.Tensor, dtype: torch.dtype, double_quant: bool) -> None:
            if not weight.is_floating_point():
                raise MiniLlamaError(f"{name}.weight is {weight.dtype}; only float weights can be quantised to NF4")
            set_module(model, name, NF4Linear.from_weight(weight, None, dtype, double_quant))
        return put

    return {f"{name}.weight": replacer(name) for name in quantizable_names(model)
            if model.get_submodule(name).bias is None}


def load_pretrained(cls, path_or_id: str | Path, dtype: torch.dtype | str | None = None,
                    device: torch.device | str | None = None, quantize: str | None = None,
                    double_quant: bool = True):
    """Build a `Llama` from a Hugging Face checkpoint.

    Args:
        cls: The model class to build (`Llama`; passed in so that this module never imports model.py).
        path_or_id: A local folder (config.json + model.safetensors or shards + index), a llama.cpp `.gguf`
            file (llama architecture; F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
            Q5_1, Q4_K, Q5_K, Q6_K tensors, dequantised) or a Hub repo id.
        dtype: float32 / bfloat16 / float16 (a torch dtype or its name); None keeps the stored dtype
            (float32 for a GGUF file: every type it reads is exact in float32).
            With `quantize`, the compute dtype (None: bfloat16 on CUDA, float32 elsewhere).
        device: Where the weights go (default CPU). Tensors are moved one at a time.
        quantize: "nf4" stores every linear layer of the decoder blocks in 4-bit NormalFloat (QLoRA,
            `minillama.nf4.NF4Linear`), quantising each tensor on `device` as it is read, so peak memory stays
            near the 4-bit size; embeddings, norms and lm_head stay in `dtype`. None: no quantisation.
        double_quant: with `quantize="nf4"`, also quantise the block constants (QLoRA's default).

    Returns:
        The model in eval mode.

    Raises:
        MiniLlamaError: Any unusable input, in one line naming the file and the problem.
    """
    target = resolve_dtype(dtype)
    try:
        device = torch.device(device) if device is not None else torch.device("cpu")
    except RuntimeError:
        raise MiniLlamaError(f"device {device!r} is not a torch device (cpu, cuda, cuda:1, mps ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MiniLlamaError(f"device {str(device)!r} asked for, but torch sees no CUDA GPU")
    if quantize not in (None, "nf4"):
        raise MiniLlamaError(f"quantize={quantize!r} is not supported (None or 'nf4')")
    if quantize and target is None:  # the compute dtype of QLoRA: bf16 on GPU, float32 on CPU
        target = torch.bfloat16 if device.type == "cuda" else torch.float32
    model_dir = resolve_model_dir(path_or_id)
    handles: dict[Path, object] = {}
    if model_dir.is_file():  # a .gguf file: the only file resolve_model_dir admits
        gguf = read_gguf(model_dir)
        config = llama_config(gguf)
        index = hf_index(gguf)
        shapes = {k: v.shape for k, v in index.items()}
        target = target or torch.float32
        total_bytes = sum(v.end - v.start for v in index.values())
        stored = dict.fromkeys(index, torch.float32)  # what dequantisation gives

        def fetch(name: str, dtype: torch.dtype | None) -> torch.Tensor:
            return hf_tensor(gguf, name, index[name], config).to(device=device, dtype=dtype or torch.float32)
    else:
        config = LlamaConfig.from_file(model_dir / "config.json")
        infos = weight_index(model_dir)
        shapes = {k: v.shape for k, v in infos.items()}
        total_bytes = sum(v.end - v.start for v in infos.values())
        stored = {k: v.dtype for k, v in infos.items()}

        def fetch(name: str, dtype: torch.dtype | None) -> torch.Tensor:
            info = infos[name]
            if info.path not in handles:
                handles[info.path] = open(info.path, "rb")
            return read_tensor(handles[info.path], info, dtype=dtype, device=device)
    with torch.device("meta"):
        model = cls(config)
    tied = config.tie_word_embeddings
    expected = expected_shapes(model)
    check_names(str(model_dir), shapes, expected, tied)

    to_nf4 = _nf4_weights(model) if quantize else {}
    state = {}
    try:  # one tensor at a time, straight into its final dtype and device (or into 4 bits there)
        for name in tqdm(list(expected), desc=f"loading {model_dir.name}", unit="tensor",
                         disable=total_bytes < 2**28):
            if name in to_nf4:  # quantise the values in `target`, free: never a 16-bit copy of the model
                widening = target == torch.float32 or stored[name] == target  # the cast would change no value
                weight = fetch(name, None if widening else target)
                to_nf4[name](weight, target, double_quant)
                del weight
                release_freed_host_memory()
            else:
                state[name] = fetch(name, target)
    finally:
        for f in handles.values():
            f.close()
    model.load_state_dict(state, strict=False, assign=True)  # names were checked above
    model.tie_weights()
    model.model.rotary_emb.reset_cache(device=device)  # the rows it was built with, on the meta device
    model.config = config.replace(torch_dtype=str(model.dtype).removeprefix("torch."))
    return model.eval()
