"""A streaming reader for the safetensors format that copies each tensor exactly once.

`safetensors.safe_open` memory-maps the whole file, and every page it reads stays in the process's
resident set until the file is closed, so loading a model through it can peak at twice the file size.
Here each tensor is read with `readinto` straight into its own, already allocated, tensor: peak memory is
the weights plus one tensor (when a dtype conversion is asked for). The format is the documented one:
8 bytes little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets}}`, then data.
"""
from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import MiniLlamaError

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_MAX_HEADER = 100 * 1024 * 1024  # the same limit as the safetensors library


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: file, dtype, shape and absolute byte range."""

    path: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    end: int


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and validate a safetensors header, checking that the file holds all the bytes it announces.

    Raises:
        MiniLlamaError: Not a safetensors file, a corrupt header, or a truncated file.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise MiniLlamaError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            (n,) = struct.unpack("<Q", raw)
            if n > _MAX_HEADER or 8 + n > size:
                raise MiniLlamaError(f"{path}: not a safetensors file or truncated (header length {n}, "
                                     f"file size {size})")
            header = json.loads(f.read(n))
    except OSError as exc:
        raise MiniLlamaError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MiniLlamaError(f"{path}: corrupt safetensors header (not JSON)") from None
    if not isinstance(header, dict):
        raise MiniLlamaError(f"{path}: corrupt safetensors header")
    base, infos, data_end = 8 + n, {}, 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype_name = meta["dtype"]
            shape = tuple(int(s) for s in meta["shape"])
            begin, end = (int(o) for o in meta["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise MiniLlamaError(f"{path}: tensor {name!r} has a malformed header entry") from None
        if dtype_name not in DTYPES:
            raise MiniLlamaError(f"{path}: tensor {name!r} has unsupported dtype {dtype_name!r}")
        dtype = DTYPES[dtype_name]
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if end - begin != math.prod(shape) * itemsize or begin < 0:
            raise MiniLlamaError(f"{path}: tensor {name!r} byte range {begin}-{end} does not match its "
                                 f"shape {list(shape)} and dtype {dtype_name}")
        infos[name] = TensorInfo(path, dtype, shape, base + begin, base + end)
        data_end = max(data_end, base + end)
    if data_end > size:
        raise MiniLlamaError(f"{path}: truncated safetensors file: the header announces {data_end} bytes, "
                             f"the file has {size}")
    return infos


def read_tensor(f, info: TensorInfo, dtype: torch.dtype | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Read one tensor from the open file `f` into a fresh CPU tensor, then convert/move it if asked.

    Args:
        f: The file of `info`, opened in binary mode.
        info: Its header entry.
        dtype: Target dtype for floating-point tensors (None keeps the stored one).
        device: Target device (None = CPU).
    """
    t = torch.empty(info.shape, dtype=info.dtype)
    buf = t.reshape(-1).view(torch.uint8).numpy()  # the tensor's own bytes, no copy
    f.seek(info.start)
    view, done = memoryview(buf), 0
    while done < len(buf):
        n = f.readinto(view[done:])
        if not n:
            raise MiniLlamaError(f"{info.path}: truncated safetensors file (ended inside a tensor)")
        done += n
    if dtype is not None and t.is_floating_point() and t.dtype != dtype:
        t = t.to(dtype)
    if device is not None and torch.device(device).type != "cpu":
        t = t.to(device)
    return t


def save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file`, with its I/O failures raised as OSError naming `path`.

    The library reports a full disk as `SafetensorError("... I/O error: No space left on device (os error
    28)")`; an OSError lets the command lines report it as a failure while running (exit status 1).
    """
    from safetensors.torch import save_file as _save_file

    try:
        _save_file(tensors, str(path), metadata=metadata)
    except Exception as exc:
        found = re.search(r"os error (\d+)", str(exc))
        if type(exc).__name__ != "SafetensorError" or found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from None
