"""One distribution figure per metric: a box plot per model with the per-item scores as points.

matplotlib is an optional extra (``pip install .[plot]``), imported lazily through its
object-oriented API (no pyplot, no global backend change). Without it nothing is drawn and the
caller records ``FIGURE_SKIPPED`` in table1.md/json.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

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


def plot_distributions(rows: Sequence[dict], models: Sequence[str], out_paths: dict[str, Path],
                       seed: int = 0) -> list[Path]:
    """Draw ``out_paths[metric]`` for each metric; returns the written paths ([] without matplotlib).

    Args:
        rows: per-item rows with ``model`` and the metric keys.
        models: the systems in table order (baseline first).
        out_paths: where to save each metric's PNG.
        seed: seed of the horizontal jitter of the points.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return []
    rng = np.random.default_rng(seed)
    written = []
    for metric, path in out_paths.items():
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
        written.append(Path(path))
    return written
