"""GGUF, llama.cpp's single-file model format, read with numpy alone (no pickle, no `gguf` package).

The layout (ggml/docs/gguf.md; ggml/src/gguf.cpp `gguf_init_from_file_impl`), all little-endian:

    header       magic "GGUF", uint32 version (2 or 3), uint64 n_tensors, uint64 n_kv
    metadata     n_kv x (string key, uint32 value type, value); a string is uint64 length + UTF-8 bytes,
                 an array is uint32 element type + uint64 count + the elements
    tensor infos n_tensors x (string name, uint32 n_dims, n_dims x uint64 ne, uint32 ggml type,
                 uint64 offset into the data section)
    padding      to `general.alignment` (default 32)
    data         the tensors, each at its offset, each offset a multiple of the alignment

`ne[0]` is the fastest-varying dimension, so a PyTorch `[out, in]` weight is stored with `ne = [in, out]`.
Every count is checked against the bytes the file still holds before it is used, and every tensor's bytes
must lie inside the file: a truncated or crafted file is one `MiniLlamaError` line naming it, before any
large allocation. Tensors are read through a read-only memory map, one at a time, when they are asked for.

`read_gguf(path)` reads the header; `dequantize(gguf, tensor)` turns one tensor into float32 exactly as ggml
does; `llama_config`, `hf_index` and `hf_tensor` give what `load.load_pretrained` needs for a Hugging Face
layout `Llama`; `tokenizer_parts(path)` rebuilds a byte-level BPE's tokenizer.json and tokenizer_config.json,
`sentencepiece_proto` a SentencePiece vocabulary's tokenizer.model (`tokenizer.gguf_tokenizer` loads either).
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .config import LlamaConfig, RopeScaling, check_values
from .errors import MiniLlamaError
from .rope_scaling import scaled_inv_freq

MAGIC = b"GGUF"
VERSIONS = (2, 3)  # version 1 (2023, 32-bit counts) is long gone; llama.cpp refuses it too
DEFAULT_ALIGNMENT = 32  # gguf.h: GGUF_DEFAULT_ALIGNMENT
MAX_DIMS = 4  # ggml.h: GGML_MAX_DIMS

# gguf.h `enum gguf_type`: value type -> (struct format, size) for the fixed-size ones.
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
            6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8",
          12: "<f8"}
STRING, ARRAY = 8, 9

# ggml.h `enum ggml_type`: the names of every type, so an unsupported one is named in the error.
GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
              11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
              18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16",
              26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4"}
# ggml.c `type_traits`: (elements per block, bytes per block) of the types read here.
BLOCKS = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20),
          "Q5_0": (32, 22), "Q5_1": (32, 24), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210)}
SUPPORTED = ", ".join(BLOCKS)


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor's entry: its name, ggml type, shape in PyTorch order (`ne` reversed) and byte range."""

    name: str
    type_name: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass
class GGUFFile:
    """A parsed GGUF header: metadata, tensor entries, and the file's bytes as a read-only memory map."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, GGUFTensor]
    data: np.ndarray  # np.memmap of uint8, the whole file


class _Cursor:
    """Reads values from `buf` at `pos`, refusing any read or count that runs past the end of the file."""

    def __init__(self, buf: np.ndarray, path: Path):
        self.buf, self.view, self.pos, self.size, self.path = buf, memoryview(buf), 0, len(buf), path

    def fail(self, what: str) -> MiniLlamaError:
        return MiniLlamaError(f"{self.path}: truncated or corrupt GGUF file ({what} at byte {self.pos}, "
                              f"file size {self.size})")

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.size - self.pos:
            raise self.fail(f"{what} needs {n} bytes, {self.size - self.pos} left")

    def scalar(self, kind: int, what: str):
        fmt, n = _SCALARS[kind]
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.view, self.pos)
        self.pos += n
        return value

    def count(self, min_item_bytes: int, what: str) -> int:
        """A uint64 count of items that each take at least `min_item_bytes`: all of them must fit."""
        n = self.scalar(10, what)
        if n * min_item_bytes > self.size - self.pos:
            raise self.fail(f"{what} {n} cannot fit in the {self.size - self.pos} bytes left")
        return n

    def string(self, what: str) -> str:
        n = self.scalar(10, f"{what} length")
        self.need(n, what)
        raw = self.view[self.pos:self.pos + n]
        self.pos += n
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not UTF-8") from None

    def value(self, kind: int, what: str, depth: int = 0):
        """One metadata value of gguf type `kind` (arrays of scalars come back as Python lists)."""
        if kind in _SCALARS:
            return self.scalar(kind, what)
        if kind == STRING:
            return self.string(what)
        if kind != ARRAY or depth > 0:  # gguf.cpp refuses nested arrays too
            raise self.fail(f"{what} has unknown value type {kind}")
        item = self.scalar(4, f"{what} element type")
        if item in _SCALARS:
            n = self.count(_SCALARS[item][1], f"{what} array length")
            values = np.frombuffer(self.buf, dtype=_NUMPY[item], count=n, offset=self.pos)
            self.pos += n * _SCALARS[item][1]
            return values.astype(bool).tolist() if item == 7 else values.tolist()
        if item == STRING:
            n = self.count(8, f"{what} array length")  # each string is at least its 8-byte length
            return [self.string(what) for _ in range(n)]
        raise self.fail(f"{what} has array element type {item} (not a scalar or a string)")


def is_gguf(path: str | Path) -> bool:
    """Whether `path` names a file with the `.gguf` suffix (its contents are checked when it is read)."""
    path = Path(path)
    return path.suffix.lower() == ".gguf" and path.is_file()


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse and validate the header of the GGUF file `path` (tensors are read later, on demand).

    Raises:
        MiniLlamaError: Not a GGUF file, an unsupported version, or a truncated or corrupt file, in one line.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size < 24:  # magic, version, two counts
            raise MiniLlamaError(f"{path}: not a GGUF file ({size} bytes, too short for a header)")
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as exc:
        raise MiniLlamaError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if bytes(data[:4]) != MAGIC:
        raise MiniLlamaError(f"{path}: not a GGUF file (magic {bytes(data[:4])!r}, expected {MAGIC!r})")
    cur = _Cursor(data, path)
    cur.pos = 4
    version = cur.scalar(4, "version")
    if version not in VERSIONS:
        raise MiniLlamaError(f"{path}: GGUF version {version} is not supported (2 or 3)")
    n_tensors = cur.scalar(10, "tensor count")
    n_kv = cur.count(8 + 4 + 1, "metadata key count")  # key length, value type, a one-byte value at least
    if n_tensors * (8 + 4 + 8 + 4 + 8) > size - cur.pos:  # name length, n_dims, one ne, type, offset
        raise cur.fail(f"tensor count {n_tensors} cannot fit in the {size - cur.pos} bytes left")

    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string("metadata key")
        metadata[key] = cur.value(cur.scalar(4, f"{key} value type"), key)

    infos = []
    for _ in range(n_tensors):
        name = cur.string("tensor name")
        n_dims = cur.scalar(4, f"tensor {name} n_dims")
        if not 1 <= n_dims <= MAX_DIMS:
            raise cur.fail(f"tensor {name} has {n_dims} dimensions (1 to {MAX_DIMS})")
        ne = [cur.scalar(10, f"tensor {name} shape") for _ in range(n_dims)]
        kind = cur.scalar(4, f"tensor {name} type")
        infos.append((name, ne, kind, cur.scalar(10, f"tensor {name} offset")))

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise MiniLlamaError(f"{path}: general.alignment {alignment!r} is not a power of two")
    base = -(-cur.pos // alignment) * alignment  # the data section starts at the next multiple
    tensors = {}
    for name, ne, kind, offset in infos:
        type_name = GGML_TYPES.get(kind, f"type {kind}")
        per_block, block_bytes = BLOCKS.get(type_name, (1, 0))  # unsupported types: refused when read
        count = math.prod(ne)
        if ne[0] % per_block or offset % alignment:  # each row is whole blocks (ggml.c `ggml_row_size`)
            raise MiniLlamaError(f"{path}: tensor {name} ({type_name}, ne {ne}) is not whole blocks of "
                                 f"{per_block} or not aligned to {alignment}")
        start = base + offset
        end = start + count // per_block * block_bytes
        if end > size:
            raise MiniLlamaError(f"{path}: truncated GGUF file: tensor {name} ends at byte {end}, the file has "
                                 f"{size}")
        if name in tensors:
            raise MiniLlamaError(f"{path}: tensor {name} is listed twice")
        tensors[name] = GGUFTensor(name, type_name, tuple(reversed(ne)), start, end)
    return GGUFFile(path, version, metadata, tensors, data)


def dequantize(gguf: GGUFFile, tensor: GGUFTensor) -> np.ndarray:
    """The values of `tensor` as a float32 array of its shape, computed exactly as ggml does.

    Raises:
        MiniLlamaError: A type other than F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K.
    """
    if tensor.type_name not in BLOCKS:
        raise MiniLlamaError(f"{gguf.path}: tensor {tensor.name} has type {tensor.type_name}; supported: "
                             f"{SUPPORTED}")
    raw = gguf.data[tensor.start:tensor.end]
    kind = tensor.type_name
    if kind == "F32":
        values = raw.view("<f4").astype(np.float32)
    elif kind == "F16":
        values = raw.view("<f2").astype(np.float32)
    elif kind == "BF16":  # ggml-impl.h: ggml_compute_bf16_to_fp32, the 16 high bits of a float32
        values = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    elif kind.endswith("_K"):
        values = _dequantize_k(kind, raw.reshape(-1, BLOCKS[kind][1]))
    else:
        blocks = raw.reshape(-1, BLOCKS[kind][1])
        d = blocks[:, 0:2].copy().view("<f2").astype(np.float32)  # every block starts with its fp16 scale d
        if kind == "Q8_0":  # ggml-quants.c: dequantize_row_q8_0, y = d * qs[j] (qs int8)
            values = blocks[:, 2:].copy().view(np.int8).astype(np.float32) * d
        else:
            # ggml-quants.c dequantize_row_q4_0 / _q4_1 / _q5_0 / _q5_1: byte j holds element j in its low
            # nibble and element j + 16 in its high nibble; Q5's fifth bit of element j is bit j of uint32 qh.
            qs = blocks[:, -16:]
            q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
            if kind.startswith("Q5"):
                qh = blocks[:, -20:-16].copy().view("<u4")  # [n, 1]
                q = q + 16 * ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.float32)
            if kind in ("Q4_0", "Q5_0"):  # y = (q - 8) * d, or (q - 16) * d
                values = (q - (8 if kind == "Q4_0" else 16)) * d
            else:  # Q4_1, Q5_1: y = q * d + m, m the block's fp16 minimum after d
                m = blocks[:, 2:4].copy().view("<f2").astype(np.float32)
                values = q * d + m
    return values.reshape(tensor.shape)


def _dequantize_k(kind: str, blocks: np.ndarray) -> np.ndarray:
    """The "k-quants" of llama.cpp's Q4_K_M / Q5_K_M files: super-blocks of 256 values in 16 or 8 sub-blocks,
    each with its own scale quantised against the block's fp16 `d` (ggml-common.h `block_q4_K`, `block_q5_K`,
    `block_q6_K`; ggml-quants.c `dequantize_row_q4_K`, `_q5_K`, `_q6_K`), in ggml's float32 operation order.

    Shapes: blocks [n, bytes per block] uint8 -> [n, 256] float32
    """
    n = blocks.shape[0]
    f16 = lambda b: b.copy().view("<f2").astype(np.float32)  # noqa: E731  [n, 1]
    if kind == "Q6_K":  # ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], fp16 d
        ql, qh = blocks[:, :128].reshape(n, 2, 64), blocks[:, 128:192].reshape(n, 2, 32)  # two halves of 128
        low = np.concatenate([ql[..., :32] & 0xF, ql[..., 32:] & 0xF, ql[..., :32] >> 4, ql[..., 32:] >> 4], axis=2)
        high = np.concatenate([qh & 3, (qh >> 2) & 3, (qh >> 4) & 3, (qh >> 6) & 3], axis=2)  # [n, 2, 128]
        q = (low | (high << 4)).astype(np.float32) - 32  # 6-bit values in [-32, 31]
        scales = np.repeat(blocks[:, 192:208].copy().view(np.int8), 16, axis=1).reshape(n, 2, 128)  # one per 16
        return ((f16(blocks[:, 208:210])[:, :, None] * scales) * q).reshape(n, 256)  # y = d * sc * q
    # Q4_K and Q5_K: fp16 d, fp16 dmin, scales[12] (8 six-bit scales and 8 six-bit mins), [Q5_K: qh[32]], qs[128]
    s = blocks[:, 4:16]
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)], axis=1)  # [n, 8]
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)  # get_scale_min_k4
    qs = blocks[:, -128:].reshape(n, 4, 1, 32)  # 4 x 32 bytes: sub-block 2c in the low nibbles, 2c+1 in the high
    q = np.concatenate([qs & 0xF, qs >> 4], axis=2).reshape(n, 8, 32)
    if kind == "Q5_K":  # the fifth bit of sub-block j's values is bit j of qh[l]
        qh = blocks[:, 16:48]
        q = q + 16 * ((qh[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1)
    d_sub = f16(blocks[:, 0:2]) * sc  # [n, 8]
    m_sub = f16(blocks[:, 2:4]) * mn
    return (d_sub[:, :, None] * q.astype(np.float32) - m_sub[:, :, None]).reshape(n, 256)  # y = d sc q - dmin m


# --- a Llama decoder in Hugging Face's names ---------------------------------------------------------------

# llama.cpp's tensor names (gguf-py/gguf/tensor_mapping.py, MODEL_TENSOR for MODEL_ARCH.LLAMA) -> HF names.
_GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                 "output.weight": "lm_head.weight"}
_BLOCK_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                "ffn_down": "mlp.down_proj"}
_BLOCK = re.compile(r"blk\.(\d+)\.([a-z_]+)\.weight")


def hf_name(name: str) -> str | None:
    """The Hugging Face name of llama.cpp's tensor `name` (`blk.3.attn_q.weight` -> `model.layers.3.self_attn.
    q_proj.weight`), or None when it is not a tensor of a Llama decoder."""
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    found = _BLOCK.fullmatch(name)
    if found and found.group(2) in _BLOCK_NAMES:
        return f"model.layers.{found.group(1)}.{_BLOCK_NAMES[found.group(2)]}.weight"
    return None


def unpermute(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's row permutation of a Q or K projection (`n_heads` = its heads: query or key/value).

    llama.cpp's convert_hf_to_gguf.py (`LlamaModel.permute`) reorders each head's rows from Hugging Face's
    rotate-half layout (first half, second half) to interleaved pairs, `reshape(n_head, 2, d/2, in)
    .swapaxes(1, 2)`; this is its inverse, as transformers' `LlamaTensorProcessor._reverse_permute_weights`.

    Shapes: weight [n_heads * head_dim, in] -> the same shape.
    """
    rows = weight.shape[0]
    return weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:]).transpose(1, 2).reshape(weight.shape)


def _meta(gguf: GGUFFile, key: str, default: Any = ..., kinds: tuple[type, ...] = (int,)) -> Any:
    """Metadata value `key` of the expected Python type(s); a missing required key is one line."""
    if key not in gguf.metadata:
        if default is ...:
            raise MiniLlamaError(f"{gguf.path}: GGUF metadata {key} is missing")
        return default
    value = gguf.metadata[key]
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise MiniLlamaError(f"{gguf.path}: GGUF metadata {key} = {value!r} has the wrong type")
    return value


def llama_config(gguf: GGUFFile) -> LlamaConfig:
    """The `LlamaConfig` of a llama-architecture GGUF, read from its metadata as transformers maps it
    (transformers/integrations/gguf/gguf_config_mapping.py, "llama").

    Raises:
        MiniLlamaError: Another architecture, a missing key, or a rope scaling minillama cannot honour.
    """
    arch = _meta(gguf, "general.architecture", kinds=(str,))
    if arch != "llama":
        raise MiniLlamaError(f"{gguf.path}: general.architecture is {arch!r}; minillama reads 'llama' GGUF files")
    p = "llama."
    scaling = _meta(gguf, p + "rope.scaling.type", "none", (str,))
    if scaling != "none":  # linear and YaRN; Llama-3.1's scaling has no type key, only rope_freqs.weight
        raise MiniLlamaError(f"{gguf.path}: rope scaling ({p}rope.scaling.type={scaling!r}) is not supported "
                             "(only Llama-3.1's per-frequency factors, rope_freqs.weight)")
    if "token_embd.weight" not in gguf.tensors:
        raise MiniLlamaError(f"{gguf.path}: no token_embd.weight tensor")
    heads = _meta(gguf, p + "attention.head_count")
    head_dim = _meta(gguf, p + "attention.key_length", None) or _meta(gguf, p + "rope.dimension_count", None)
    rot = _meta(gguf, p + "rope.dimension_count", head_dim)
    if head_dim is not None and rot != head_dim:
        raise MiniLlamaError(f"{gguf.path}: {p}rope.dimension_count {rot} != head width {head_dim} (partial "
                             "rotary embeddings are not supported)")
    tok = "tokenizer.ggml."
    eos = _meta(gguf, tok + "eos_token_id", 2)
    values = dict(
        vocab_size=gguf.tensors["token_embd.weight"].shape[0],
        hidden_size=_meta(gguf, p + "embedding_length"),
        intermediate_size=_meta(gguf, p + "feed_forward_length"),
        num_hidden_layers=_meta(gguf, p + "block_count"),
        num_attention_heads=heads,
        num_key_value_heads=_meta(gguf, p + "attention.head_count_kv", heads),
        head_dim=head_dim,
        max_position_embeddings=_meta(gguf, p + "context_length", 4096),
        rms_norm_eps=float(_meta(gguf, p + "attention.layer_norm_rms_epsilon", 1e-5, (float, int))),
        rope_theta=float(_meta(gguf, p + "rope.freq_base", 10000.0, (float, int))),
        tie_word_embeddings="output.weight" not in gguf.tensors,  # as transformers decides it
        bos_token_id=_meta(gguf, tok + "bos_token_id", 1),
        eos_token_id=eos,
        pad_token_id=_meta(gguf, tok + "padding_token_id", None),
        torch_dtype="float32",
    )
    try:
        check_values(values)
    except MiniLlamaError as exc:
        raise MiniLlamaError(f"{gguf.path}: {exc}") from None
    config = LlamaConfig(**values)
    if "rope_freqs.weight" in gguf.tensors:
        config = replace(config, rope_scaling=llama3_rope_scaling(gguf, config.head_dim, config.rope_theta))
    return config


# Llama-3's released `rope_scaling` besides its factor (8 for 3.1, 32 for 3.2): low 1, high 4, context 8192.
_LLAMA3_ROPE = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def llama3_rope_scaling(gguf: GGUFFile, head_dim: int, theta: float) -> RopeScaling | None:
    """The `RopeScaling` of Llama-3.1's `rope_freqs.weight`, or None when every factor is 1.

    llama.cpp's converter (convert_hf_to_gguf.py, `LlamaModel.generate_extra_tensors`) stores config.json's
    four numbers as one divisor per rotary frequency (`[head_dim / 2]`: 1 for the high frequencies, `factor`
    for the low ones, `1 / ((1 - s) / factor + s)` between), and llama.cpp rotates by `inv_freq / divisor`.
    transformers' GGUF loading drops the tensor (its Llama-3.1 logits differ from the checkpoint's); here the
    four numbers are read back, `factor` the largest divisor and the others Llama-3's released values, and kept
    only if they give every stored divisor again (relative 1e-5). The model then computes the frequencies as
    transformers does from the original config.json.

    Raises:
        MiniLlamaError: A tensor of another shape, or divisors that are not Llama-3's scaling.
    """
    tensor = gguf.tensors["rope_freqs.weight"]
    if tensor.shape != (head_dim // 2,):
        raise MiniLlamaError(f"{gguf.path}: rope_freqs.weight has shape {list(tensor.shape)}; expected "
                             f"[{head_dim // 2}] (one factor per rotary frequency)")
    stored = dequantize(gguf, tensor).astype(np.float64)
    if not np.isfinite(stored).all() or (stored <= 0).any():
        raise MiniLlamaError(f"{gguf.path}: rope_freqs.weight holds factors that are not finite and > 0")
    if (stored == 1).all():
        return None
    scaling = RopeScaling(factor=float(stored.max()), **_LLAMA3_ROPE)
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2) / head_dim)
    rebuilt = inv_freq / scaled_inv_freq(torch.from_numpy(inv_freq), scaling).numpy()
    if not np.allclose(rebuilt, stored, rtol=1e-5, atol=0):
        raise MiniLlamaError(f"{gguf.path}: rope_freqs.weight is not Llama-3.1's rope scaling (factor "
                             f"{scaling.factor:g}, low_freq_factor 1, high_freq_factor 4, original context 8192); "
                             "minillama reads no other per-frequency factors")
    return scaling


def hf_index(gguf: GGUFFile) -> dict[str, GGUFTensor]:
    """{Hugging Face name: entry} of every tensor. A tensor a Llama decoder does not have, or of a type that
    `dequantize` does not read, is refused here, before any tensor is read."""
    index = {}
    for name, tensor in gguf.tensors.items():
        if name == "rope_freqs.weight":  # read into the config by `llama_config`
            continue
        key = hf_name(name)
        if key is None:
            raise MiniLlamaError(f"{gguf.path}: tensor {name} is not part of a Llama decoder")
        if tensor.type_name not in BLOCKS:
            raise MiniLlamaError(f"{gguf.path}: tensor {name} has type {tensor.type_name}; supported: {SUPPORTED}")
        index[key] = tensor
    return index


def hf_tensor(gguf: GGUFFile, hf_key: str, tensor: GGUFTensor, config: LlamaConfig) -> torch.Tensor:
    """The float32 tensor Hugging Face calls `hf_key`: dequantised, Q and K rows put back in HF's order."""
    weight = torch.from_numpy(dequantize(gguf, tensor))
    if hf_key.endswith("q_proj.weight"):
        weight = unpermute(weight, config.num_attention_heads)
    elif hf_key.endswith("k_proj.weight"):
        weight = unpermute(weight, config.num_key_value_heads)
    return weight


# --- the tokenizer ------------------------------------------------------------------------------------------

# The split patterns transformers' GGUF converter gives a byte-level vocabulary, by `tokenizer.ggml.pre`
# (transformers/integrations/gguf/gguf_tokenizer_mapping.py, GGUF_PRE_TOKENIZER_SPLITS); any other `pre`
# ("smollm", "gpt-2", "default" ...) keeps GPT-2's `ByteLevel(use_regex=true)`, as there.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_SPLITS = {**dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
                               "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe"), _LLAMA3_SPLIT),
              **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"), _QWEN2_SPLIT)}
CONTROL, USER_DEFINED = 3, 4  # llama.cpp `enum llama_token_type` (tokenizer.ggml.token_type)


def _byte_alphabet() -> dict[int, str]:
    from .bpe import bytes_to_unicode
    return bytes_to_unicode()


def tokenizer_parts(path: str | Path | GGUFFile) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tokenizer a GGUF file (a path, or one `read_gguf` already read) describes, as `(tokenizer.json,
    tokenizer_config.json)` dicts.

    Only llama.cpp's byte-level BPE (`tokenizer.ggml.model` "gpt2": Llama 3, SmolLM, Qwen ...) is rebuilt,
    the way transformers' GGUF converter builds it (`byte_level_tokenizer`, `add_gguf_special_tokens`,
    `set_split_regex` in transformers/integrations/gguf/gguf_tokenizer_mapping.py): tokens become the BPE
    vocabulary (a token not spelled in GPT-2's byte alphabet is respelled from its UTF-8 bytes), merges
    "a b" become pairs, control tokens (type 3) become special added tokens and user-defined ones (type 4)
    plain added tokens, and `tokenizer.ggml.pre` picks the split pattern.

    Raises:
        MiniLlamaError: Another tokenizer model (SentencePiece "llama": `sentencepiece_proto`), or missing
            vocabulary keys.
    """
    gguf = path if isinstance(path, GGUFFile) else read_gguf(path)
    meta = gguf.metadata
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise MiniLlamaError(f"{gguf.path}: tokenizer.ggml.model is {model!r}; only 'gpt2' (byte-level BPE) and "
                             "'llama' (SentencePiece) are rebuilt from a GGUF (pass --tokenizer with a tokenizer.json "
                             "or tokenizer.model)")
    tokens = _meta(gguf, "tokenizer.ggml.tokens", kinds=(list,))
    merges = _meta(gguf, "tokenizer.ggml.merges", kinds=(list,))
    types = _meta(gguf, "tokenizer.ggml.token_type", [], (list,))
    spelling = _byte_alphabet()
    alphabet = set(spelling.values())
    vocab = {}
    for i, token in enumerate(tokens):
        vocab[token if set(token) <= alphabet else "".join(spelling[b] for b in token.encode("utf-8"))] = i
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": kind == CONTROL}
             for i, (t, kind) in enumerate(zip(tokens, types))
             if (kind == CONTROL and set(t) <= alphabet) or (kind == USER_DEFINED and t in vocab)]
    split = PRE_SPLITS.get(meta.get("tokenizer.ggml.pre"))
    if split is None:  # GPT-2's byte-level pre-tokenizer, its own regex
        pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    else:
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    spec = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": pre, "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [m.split(" ", 1) for m in merges]},
    }
    config: dict[str, Any] = {}
    for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id"),
                      ("pad_token", "padding_token_id")):
        token_id = _meta(gguf, f"tokenizer.ggml.{key}", None)
        if token_id is not None and not 0 <= token_id < len(tokens):
            raise MiniLlamaError(f"{gguf.path}: tokenizer.ggml.{key} {token_id} is not a token id")
        config[name] = None if token_id is None else tokens[token_id]
    if "tokenizer.ggml.add_bos_token" in meta:
        config["add_bos_token"] = _meta(gguf, "tokenizer.ggml.add_bos_token", kinds=(bool,))
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = _meta(gguf, "tokenizer.chat_template", kinds=(str,))
    return spec, config


def sentencepiece_config(gguf: GGUFFile) -> dict[str, Any]:
    """tokenizer_config.json's keys a SentencePiece GGUF sets: BOS added unless the file says otherwise (llama.cpp's
    default for this vocabulary, as transformers reads it), EOS only if it says so, the chat template, and `legacy`:
    llama.cpp prefixes "▁" to every text after a special token (`is_prev_special`), as Meta's tokenizer.model and
    Llama-2's Hub tokenizer do (transformers builds a GGUF's LlamaTokenizer non-legacy; docs/minillama.md)."""
    config: dict[str, Any] = {"add_bos_token": _meta(gguf, "tokenizer.ggml.add_bos_token", True, (bool,)),
                              "add_eos_token": _meta(gguf, "tokenizer.ggml.add_eos_token", False, (bool,)),
                              "legacy": True}
    if "tokenizer.chat_template" in gguf.metadata:
        config["chat_template"] = _meta(gguf, "tokenizer.chat_template", kinds=(str,))
    return config


# SentencePiece's model file is a protocol buffer (sentencepiece_model.proto); the few fields encoding reads are
# written here by hand, so no protobuf library is needed. Wire types: 0 varint, 2 length-delimited, 5 32-bit.
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # a negative int32 (pad_id -1) is its 64-bit two's complement
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, value: int | float | bytes) -> bytes:
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    if isinstance(value, float):
        return _varint(number << 3 | 5) + struct.pack("<f", value)
    return _varint(number << 3) + _varint(int(value))


def sentencepiece_proto(gguf: GGUFFile) -> bytes:
    """The SentencePiece model a GGUF's "llama" vocabulary describes, serialised (`SentencePieceProcessor(
    model_proto=...)` loads it): each token with its score and type (llama.cpp's token types are SentencePiece's:
    1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte), and the encoding settings of Llama-2's
    tokenizer.model, which a GGUF does not store: BPE with byte fallback, split at whitespace, whitespace-only
    pieces allowed, no normalisation but the "▁" dummy prefix (`tokenizer.ggml.add_space_prefix`, default true).

    Raises:
        MiniLlamaError: tokens, scores and types of different lengths, or special ids outside the vocabulary.
    """
    tokens = _meta(gguf, "tokenizer.ggml.tokens", kinds=(list,))
    scores = _meta(gguf, "tokenizer.ggml.scores", [0.0] * len(tokens), (list,))
    types = _meta(gguf, "tokenizer.ggml.token_type", [1] * len(tokens), (list,))
    if not len(tokens) == len(scores) == len(types):
        raise MiniLlamaError(f"{gguf.path}: tokenizer.ggml has {len(tokens)} tokens, {len(scores)} scores and "
                             f"{len(types)} token types; expected as many of each")
    ids = {}
    for key, default in (("unknown_token_id", 0), ("bos_token_id", 1), ("eos_token_id", 2), ("padding_token_id", -1)):
        ids[key] = _meta(gguf, f"tokenizer.ggml.{key}", default)
        if not -1 <= ids[key] < len(tokens) or (ids[key] == -1 and key != "padding_token_id"):
            raise MiniLlamaError(f"{gguf.path}: tokenizer.ggml.{key} {ids[key]} is not a token id")
    if ids["padding_token_id"] in (ids["unknown_token_id"], ids["bos_token_id"], ids["eos_token_id"]):
        ids["padding_token_id"] = -1  # SentencePiece refuses a pad id shared with another special piece
    pieces = b"".join(_field(1, _field(1, str(t).encode("utf-8")) + _field(2, float(score)) + _field(3, int(kind)))
                      for t, score, kind in zip(tokens, scores, types))
    trainer = b"".join([_field(3, 2), _field(4, len(tokens)),  # model_type BPE, vocab_size
                        _field(22, 1), _field(24, 0), _field(26, 1),  # split_by_whitespace, as suffix, ws-only pieces
                        _field(35, 1), _field(40, ids["unknown_token_id"]), _field(41, ids["bos_token_id"]),
                        _field(42, ids["eos_token_id"]), _field(43, ids["padding_token_id"])])  # byte_fallback, ids
    prefix = _meta(gguf, "tokenizer.ggml.add_space_prefix", True, (bool,))
    normalizer = b"".join([_field(1, b"identity"), _field(3, int(prefix)), _field(4, 0), _field(5, 1)])
    return pieces + _field(2, trainer) + _field(3, normalizer)
