"""One distribution figure per metric: a box plot per model with the per-item scores as points.

matplotlib is an optional extra (``pip install .[plot]``), imported lazily through its
object-oriented API (no pyplot, no global backend change). Without it nothing is drawn and the
caller records ``FIGURE_SKIPPED`` in table1.md/json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from evalkit.score import METRIC_LABELS, METRICS

FIGURE_SKIPPED = "figure skipped (matplotlib not installed)"


def matplotlib_available() -> bool:
    """Whether ``matplotlib`` can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def figure_names(metrics: Sequence[str] = METRICS) -> list[str]:
    """File names of the figures, one per metric: ``dist_<metric>.png``."""
    return [f"dist_{m}.png" for m in metrics]


def figure_writers(rows: Sequence[dict], models: Sequence[str], seed: int = 0) -> dict[str, Callable[[Path], None]]:
    """{`dist_<metric>.png`: a function that draws that figure into the path it is given}, for every metric.

    Called in order (as `plumbing.durable.write_files_atomic` does), they share one jitter generator seeded
    with `seed`, so the figures are the same on every run.

    Args:
        rows: per-item rows with ``model`` and the metric keys.
        models: the systems in table order (baseline first).
    """
    rng = np.random.default_rng(seed)
    return {name: (lambda path, metric=metric: plot_distribution(rows, models, metric, path, rng))
            for metric, name in zip(METRICS, figure_names())}


def plot_distribution(rows: Sequence[dict], models: Sequence[str], metric: str, path: Path,
                      rng: np.random.Generator) -> None:
    """Draw one metric's box plot per model, the per-item points jittered by `rng`, into `path` (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = [np.array([r[metric] for r in rows if r["model"] == m]) for m in models]
    fig = Figure(figsize=(2.2 + 1.4 * len(models), 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.boxplot(data, showfliers=False, widths=0.5)
    for i, values in enumerate(data, start=1):
        jitter = rng.uniform(-0.15, 0.15, size=len(values))
        ax.scatter(np.full(len(values), i) + jitter, values, s=8, alpha=0.5)
        # The mean as a white diamond drawn above the median line, so it stays visible when they coincide.
        ax.scatter([i], [values.mean()], marker="D", s=42, facecolor="white", edgecolor="black",
                   linewidth=1.2, zorder=5)
    ax.set_xticks(range(1, len(models) + 1))
    ax.set_xticklabels(models, rotation=15)
    ax.set_ylabel(f"{METRIC_LABELS[metric]} per item")
    ax.set_title(f"{METRIC_LABELS[metric]}, N = {len(data[0])} items")
    fig.text(0.5, 0.01, "box: quartiles; line: median; white diamond: mean", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, format="png")
