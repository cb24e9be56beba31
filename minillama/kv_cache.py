"""A preallocated key/value cache: each decoding step writes one slot instead of concatenating tensors."""
from __future__ import annotations

import torch


class KVCache:
    """Keys and values of one attention layer for `max_len` positions, allocated once.

    Args:
        batch_size: Rows in the batch.
        n_kv_heads: Key/value heads.
        max_len: Longest sequence (prompt + new tokens) the cache must hold.
        head_dim: Width of one head.
        dtype: Activation dtype.
        device: Where the cache lives.
    """

    def __init__(self, batch_size: int, n_kv_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def update(self, k: torch.Tensor, v: torch.Tensor, start: int | torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write `k`, `v` at positions `start ... start+T-1` and return all keys/values up to there.

        With `start` a tensor (the static-shape step that CUDA graphs replay, see `static_decode.py`) the
        write is an `index_copy_` and the whole cache is returned; the caller's mask hides unused slots.

        Shapes:
            k, v: [B, n_kv, T, head_dim] -> keys, values: [B, n_kv, start+T, head_dim] (views, no copy),
            or [B, n_kv, max_len, head_dim] when `start` is a tensor of shape [T]
        """
        if isinstance(start, torch.Tensor):
            self.k.index_copy_(2, start, k)
            self.v.index_copy_(2, start, v)
            return self.k, self.v
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions, asked to write up to {end}")
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]


def make_cache(config, batch_size: int, max_len: int, dtype: torch.dtype,
               device: torch.device | str) -> list[KVCache]:
    """One `KVCache` per layer of a model with `config` (a `LlamaConfig`)."""
    return [KVCache(batch_size, config.num_key_value_heads, max_len, config.head_dim, dtype, device)
            for _ in range(config.num_hidden_layers)]
