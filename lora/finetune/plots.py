"""The run's loss curve (`loss.png`): training loss per step and validation loss, from metrics.jsonl."""
from __future__ import annotations

from pathlib import Path

from lora.finetune.run_folder import read_rows


def read_metrics(path: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train, val) lists of (step, loss) from a metrics.jsonl file."""
    train, val = [], []
    for row in read_rows(path):
        (train if row.get("type") == "train" else val).append((row["step"], row["loss"]))
    return train, val


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (the raw per-step loss of a batch-1 run is very noisy)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_loss(metrics_path: Path, out_png: Path) -> str:
    """Draw train (raw and smoothed) and validation loss against the step; returns a status line.

    matplotlib is an optional extra: without it nothing is drawn and the line says so. It is used through its
    object-oriented API (no pyplot, no global backend change), so a notebook that calls `train()` keeps
    showing its own figures.
    """
    try:
        import matplotlib  # noqa: F401  (first: a missing matplotlib fails here, whatever submodules are loaded)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "figure skipped (matplotlib not installed)"
    train, val = read_metrics(metrics_path)
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if train:
        steps, losses = zip(*train)
        window = max(1, len(losses) // 50)
        ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="train (per step)")
        if window > 1:
            ax.plot(steps, smooth(list(losses), window), color="tab:blue", label=f"train (mean of {window})")
    if val:
        steps, losses = zip(*val)
        ax.plot(steps, losses, "o-", color="tab:orange", label="validation")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy (nats / target token)")
    ax.set_title("LoRA fine-tuning loss (Eq. 3)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(out_png, dpi=120)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(out_png)) from None
    return f"wrote {out_png}"
