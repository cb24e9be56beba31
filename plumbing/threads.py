"""How torch uses the CPU cores when other processes compete for them: OpenMP's wait policy and thread count.

torch's default is one intra-op thread per core, whose OpenMP threads spin while they wait for each
other at every operator's barrier. When other processes keep the cores busy, a spinning thread burns
the time slice its partner needs, and a small model (the CPU demo) ran 3-5x slower than on one thread.
Measured on the 2-core machine, the demo's training beside two busy processes took 167 s with torch's
default (2 spinning threads), 114 s on one thread and 89 s with two threads that sleep while they wait
(`OMP_WAIT_POLICY=PASSIVE`); on an idle machine, spinning threads are fastest (46 s against 67 s).

So, two decisions, both from `/proc/stat`: how much CPU the *other* processes used (all CPU time minus
this process's own) over a short probe.

1. `prepare_openmp()`, called by the entry points before torch is imported (OpenMP reads it once): a busy
   machine gets `OMP_WAIT_POLICY=PASSIVE`, an idle one keeps OpenMP's spinning default.
2. `ThreadPolicy`: with passive waiting, one thread per core (they cost nothing while they wait); with
   spinning threads, the cores the others leave free, at least one, re-measured every `interval` seconds
   by `tick()` (called every step of long loops), so a job that started on an idle machine does not
   collapse when a neighbour starts.

`OMP_NUM_THREADS`, `OMP_WAIT_POLICY`, `GOMP_SPINCOUNT` or `--num-threads` set by the user always win.
Where `/proc/stat` is missing (not Linux) torch's defaults stay.
"""
from __future__ import annotations

import os
import sys
import time

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_sample() -> tuple[float, float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process, wall time), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    own_ticks = int(own[11]) + int(own[12])  # utime + stime (fields 14 and 15 of /proc/self/stat)
    return busy / _CLOCK_TICKS, own_ticks / _CLOCK_TICKS, time.monotonic()


def _others_busy(before, after) -> float:
    """Cores the other processes kept busy between two `cpu_sample`s (all busy time minus our own)."""
    wall = max(after[2] - before[2], 1e-6)
    return max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall


def free_cores(before, after) -> int:
    """Cores the other processes left free between two `cpu_sample`s (at least 1)."""
    return max(1, min(usable_cores(), int(usable_cores() - _others_busy(before, after) + 0.5)))


def probe(seconds: float = 0.2) -> tuple | None:
    """Two `cpu_sample`s `seconds` apart, or None off Linux."""
    first = cpu_sample()
    if first is None:
        return None
    time.sleep(seconds)
    return first, cpu_sample()


_STARTUP: tuple | None = None  # prepare_openmp's probe, reused once by ThreadPolicy.start while it is fresh


def prepare_openmp(threshold: float = 0.5) -> str:
    """Choose OpenMP's wait policy before torch is imported: PASSIVE when other processes keep at least
    `threshold` of a core busy now. Returns the policy in force ("" for OpenMP's default)."""
    global _STARTUP
    user_set = any(k in os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"))
    if not user_set and "torch" not in sys.modules:
        _STARTUP = probe()
        if _STARTUP is not None and _others_busy(*_STARTUP) >= threshold:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return os.environ.get("OMP_WAIT_POLICY", "")


def passive_wait() -> bool:
    """Whether OpenMP's threads sleep while they wait (set before torch was imported)."""
    return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" or os.environ.get("GOMP_SPINCOUNT") == "0"


class ThreadPolicy:
    """Sets torch's intra-op threads from the measured load, and keeps them right while a job runs.

    Args:
        requested: > 0: exactly that many threads, never changed; 0: `OMP_NUM_THREADS` if set, else the policy.
        interval: seconds between two measurements in `tick`.
    """

    def __init__(self, requested: int = 0, interval: float = 5.0):
        env = os.environ.get("OMP_NUM_THREADS", "")
        self.fixed = requested if requested > 0 else (int(env) if env.isdigit() and int(env) > 0 else 0)
        self.interval = interval
        self._last = None

    def start(self, probe_s: float = 0.2) -> int:
        """Measure the other processes' load for `probe_s` seconds (or take the probe `prepare_openmp`
        made moments ago), set the thread count and return it."""
        import torch

        if self.fixed:
            torch.set_num_threads(self.fixed)
            return self.fixed
        if passive_wait():  # sleeping threads cost nothing while they wait: one per core
            self.fixed = usable_cores()
            torch.set_num_threads(self.fixed)
            return self.fixed
        global _STARTUP
        fresh = _STARTUP is not None and time.monotonic() - _STARTUP[1][2] < self.interval
        samples, _STARTUP = (_STARTUP if fresh else probe(probe_s)), None  # no second probe right after the first
        if samples is None:
            return torch.get_num_threads()
        self._last = samples[1]
        torch.set_num_threads(free_cores(*samples))
        return torch.get_num_threads()

    def tick(self) -> None:
        """Re-measure when `interval` seconds have passed; cheap enough to call every step."""
        if self.fixed or self._last is None or time.monotonic() - self._last[2] < self.interval:
            return
        import torch

        now = cpu_sample()
        n = free_cores(self._last, now)
        self._last = now
        if n != torch.get_num_threads():
            torch.set_num_threads(n)


_ACTIVE: ThreadPolicy | None = None  # the policy of this process, once configure_threads ran


def configure_threads(requested: int = 0) -> int:
    """Apply the policy for this process (see `ThreadPolicy`) and return the thread count now."""
    global _ACTIVE
    _ACTIVE = ThreadPolicy(requested)
    return _ACTIVE.start()


def tick() -> None:
    """Called by long loops (training steps, the demo warm-up, generation batches): see `ThreadPolicy.tick`."""
    if _ACTIVE is not None:
        _ACTIVE.tick()
