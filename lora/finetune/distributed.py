"""Several processes under `torchrun`: process group, device, DDP or FSDP2 wrapping, reductions, RNG streams.

One process per GPU (nccl) or per CPU worker (gloo). A single process (no `WORLD_SIZE` > 1 in the
environment) uses none of `torch.distributed`, so plain `python scripts/train.py` needs no launcher.

- DDP replicates the model; its gradients are averaged over ranks in backward. The RoPE tables are
  buffers computed identically on every rank, so DDP does not synchronise buffers in its forward:
  a rank with nothing to validate never blocks the others inside a forward.
- FSDP2 (`fully_shard`) shards every parameter of each decoder layer, then the rest at the root, over
  the ranks: the frozen base takes 1/N of its memory per GPU. Its gradients are reduce-scattered; the
  loss is scaled the same way as under DDP.
- RNG: every rank seeds the same stream before the LoRA init (same A on every rank), then its own
  stream (`seed_rank_stream`), so dropout masks differ across ranks as they do across the examples of
  one process.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: `rank` of `world_size`, its `device`; `is_main` does all the writing."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # this setup() created the process group (teardown() destroys only that)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistInfo:
    """Join the `torchrun` process group if there is one (or reuse the caller's); pick this process's device.

    Args:
        device: "auto" (cuda if available, else cpu), "cpu", or "cuda".
    """
    want_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    owns = world > 1 and not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev, owns_group=owns)


def seed_rank_stream(seed: int, info: DistInfo) -> None:
    """Give this rank its own torch / python / numpy stream, derived from (seed, rank)."""
    s = seed * 1_000_003 + 7919 * (info.rank + 1)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s % 2**32)


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP-wrap `model` when distributed (gradients averaged over ranks in backward; buffers not broadcast)."""
    if not info.distributed:
        return model
    import inspect

    from torch.nn.parallel import DistributedDataParallel as DDP

    # The buffers (RoPE tables) are the same on every rank: never synchronise them in a forward. Newer
    # torch names this forward_sync_buffers (one sync at construction is harmless); older, broadcast_buffers.
    no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters \
        else {"broadcast_buffers": False}
    return DDP(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None, **no_sync)


def shard_fsdp(root: torch.nn.Module, layers) -> None:
    """FSDP2: `fully_shard` each decoder layer, then the root (both changed in place).

    The root is the module whose forward the loop calls (the loss module around the LM), so that its
    own parameters (embedding, final norm, lm_head) are gathered before it runs. Gradients are
    reduce-scattered as an average over ranks (like DDP); parameters keep their dtypes (a bf16 base with
    float32 LoRA weights; bf16 autocast does the compute casting).
    """
    from torch.distributed.fsdp import fully_shard

    for layer in layers:
        fully_shard(layer)
    fully_shard(root)


def no_sync(model: torch.nn.Module, skip: bool):
    """Skip the gradient all-reduce for all but the last micro-batch of an accumulation (DDP), or defer
    the reduce-scatter (FSDP2)."""
    if not skip:
        return contextlib.nullcontext()
    if hasattr(model, "no_sync"):
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):
        return _fsdp_no_sync(model)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum of `values` over ranks (float64 on the process's device)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_objects(obj: object, info: DistInfo) -> list[object]:
    """Every rank's `obj` (picklable; made by our own processes, never read from a file), in rank order."""
    if not info.distributed:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def broadcast_object(obj: object, info: DistInfo) -> object:
    """Rank 0's `obj` on every rank (e.g. an error message, so that all ranks stop together)."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def teardown(info: DistInfo) -> None:
    """Destroy the process group if `setup` created it (a caller's own group is left alone)."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()
