"""A dependency-free progress bar for long loops (training, generation, scoring, judging)."""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")


class Progress:
    """Minimal tqdm-like bar: `for x in Progress(items, desc="gen")` or manual `update(n, **stats)`.

    Draws on stderr, at most every `min_interval` seconds, with rate and ETA; when stderr is not a
    terminal (CI, logs) it prints a plain line at most every `log_interval` seconds instead, so logs
    stay readable. `stats` are shown as `key=value` after the bar (loss, lr, tokens/s ...).
    """

    def __init__(self, iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", file: TextIO | None = None, disable: bool = False,
                 min_interval: float = 0.1, log_interval: float = 10.0, initial: int = 0):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file or sys.stderr
        self.disable = disable
        self.tty = hasattr(self.file, "isatty") and self.file.isatty()
        self.interval = min_interval if self.tty else log_interval
        self.n = initial
        self.initial = initial
        self.stats: dict[str, object] = {}
        self.start = self.last = time.perf_counter()

    def __iter__(self) -> Iterator[T]:
        assert self.iterable is not None, "Progress(iterable=...) is needed to iterate"
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, **stats: object) -> None:
        self.n += n
        self.stats.update(stats)
        now = time.perf_counter()
        if not self.disable and now - self.last >= self.interval:
            self.last = now
            self._draw(final=False)

    def close(self) -> None:
        if not self.disable and self.n > self.initial - 1:
            self._draw(final=True)
            self.disable = True

    def _draw(self, final: bool) -> None:
        elapsed = time.perf_counter() - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = min(1.0, self.n / self.total)
            bar = "#" * int(frac * 20)
            eta = (self.total - self.n) / rate if rate > 0 else float("nan")
            head = f"{self.desc}: {frac * 100:5.1f}% |{bar:<20}| {self.n}/{self.total} [{_fmt(elapsed)}<{_fmt(eta)}, {rate:.2f} {self.unit}/s]"
        else:
            head = f"{self.desc}: {self.n} {self.unit} [{_fmt(elapsed)}, {rate:.2f} {self.unit}/s]"
        tail = " ".join(f"{k}={_fmt_val(v)}" for k, v in self.stats.items())
        line = f"{head} {tail}".rstrip()
        if self.tty:
            self.file.write("\r" + line + ("\n" if final else ""))
        else:
            self.file.write(line + "\n")
        self.file.flush()


def _fmt(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _fmt_val(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
