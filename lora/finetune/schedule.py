"""The learning-rate schedule: linear warm-up to the peak, then cosine decay (alpaca-lora's, via HF Trainer).

The rate is a pure function of the step, so a checkpoint needs no scheduler state: the step is enough.
"""
from __future__ import annotations

import math


def lr_at(step: int, peak: float, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> float:
    """Learning rate of optimiser step `step` (0-based).

    Args:
        peak: the learning rate reached at the end of the warm-up.
        warmup_steps: steps of linear warm-up (step 0 gets peak / warmup_steps).
        total_steps: steps of the whole run; the cosine reaches `peak * min_lr_ratio` at the end.
        min_lr_ratio: the floor of the cosine, as a fraction of the peak (HF's cosine schedule: 0).
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return peak * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)


def warmup_warning(peak: float, warmup_steps: int, total_steps: int, max_steps: int,
                   num_epochs: float) -> str | None:
    """One line when the warm-up is longer than the run (the rate never reaches `peak`), else None."""
    if warmup_steps <= total_steps:
        return None
    top = lr_at(total_steps - 1, peak, warmup_steps, total_steps)
    run = f"--max-steps {max_steps}" if max_steps > 0 else f"from --num-epochs {num_epochs:g}; no --max-steps"
    return (f"warning: --warmup-steps {warmup_steps} is longer than the run's {total_steps} steps ({run}): the "
            f"learning rate peaks at {top:.1e} of {peak:.1e}; give a --warmup-steps below the run's steps")
