"""Data-parallel plumbing for `torchrun`: process group, device, DDP wrapping, reductions.

One process per GPU (nccl) or per CPU worker (gloo). A single process (no `WORLD_SIZE` > 1 in the
environment) uses none of `torch.distributed`, so plain `python scripts/train.py` needs no launcher.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: `rank` of `world_size`, its `device`; `is_main` does all the writing."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistInfo:
    """Join the `torchrun` process group if there is one; pick this process's device.

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
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP-wrap `model` when distributed (its gradients are then averaged over ranks in backward)."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)


def no_sync(model: torch.nn.Module, skip: bool):
    """Skip DDP's gradient all-reduce for all but the last micro-batch of an accumulation."""
    if skip and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Element-wise sum of `values` over ranks (float64 on the process's device)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_objects(obj: object, info: DistInfo) -> list[object]:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
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
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
