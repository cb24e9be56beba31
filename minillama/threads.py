"""How many CPU threads torch uses: one per core that is free right now, so a busy machine never collapses.

torch's default is one intra-op thread per core. When other processes keep those cores busy, its
OpenMP threads spin and wait for each other at every operator's barrier, and small models (the CPU
demo) run several times slower than on one thread. The policy here counts the cores this process may
use (`sched_getaffinity`) and subtracts the other processes that are running now (the runnable count of
`/proc/loadavg`, sampled a few times), keeping at least one thread. `OMP_NUM_THREADS` or an explicit
count (`--num-threads`) always wins. On a GPU run the CPU threads matter little; the policy is the same.
"""
from __future__ import annotations

import os
import time


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def busy_cores(samples: int = 5, interval: float = 0.02) -> float:
    """Cores that other processes keep busy now: runnable tasks in /proc/loadavg minus this reader.

    The 4th field of /proc/loadavg is "runnable/total" at this instant (the reading process itself is
    one of them); the median of a few samples smooths it. 0 where the file does not exist.
    """
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, IndexError, ValueError):
            return 0.0
        if i + 1 < samples:
            time.sleep(interval)
    counts.sort()
    return float(counts[len(counts) // 2])


def policy_threads() -> int:
    """The policy's thread count: free cores now, at least 1."""
    return max(1, usable_cores() - int(round(busy_cores())))


def configure_threads(requested: int = 0) -> int:
    """Set torch's intra-op thread count and return it.

    Args:
        requested: > 0 sets exactly that many; 0 applies `OMP_NUM_THREADS` if set, else `policy_threads()`.
    """
    import torch

    if requested > 0:
        n = requested
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        n = int(os.environ["OMP_NUM_THREADS"])
    else:
        n = policy_threads()
    torch.set_num_threads(n)
    return n
