"""Experiment trackers: `--report-to none|tensorboard|wandb` (the Hugging Face Trainer's `report_to` and values).

metrics.jsonl stays the record of a run; a tracker is a copy of it for a dashboard, fed row by row by
`run_folder.MetricsLog`, where each row is written. Every row becomes one point per value at the row's
optimiser step, under the Trainer's names:

    metrics.jsonl row                                 tracker tags
    {"type": "train", "loss", "lr", "grad_norm",     train/loss, train/learning_rate, train/grad_norm,
     "tokens_per_s", ...}                             train/tokens_per_s
    {"type": "val", "loss"}                           eval/loss

and the run's config (config.json's fields) is logged once as its hyper-parameters. TensorBoard writes event
files into `<out>/tensorboard/` (`torch.utils.tensorboard`, the `tensorboard` package: `pip install
medlora[tensorboard]`); W&B (`pip install medlora[wandb]`) writes its run into `<out>/wandb/`, offline unless
WANDB_MODE says otherwise (no account needed; `wandb sync <out>/wandb/offline-run-*` uploads it later).
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from lora.finetune.config import TrainError

CHOICES = ("none", "tensorboard", "wandb")
EXTRA = {"tensorboard": "tensorboard", "wandb": "wandb"}   # --report-to value -> the pyproject extra and package
TAGS = {"train": {"loss": "train/loss", "lr": "train/learning_rate", "grad_norm": "train/grad_norm",
                  "tokens_per_s": "train/tokens_per_s"},
        "val": {"loss": "eval/loss"}}


def check_installed(report_to: str) -> None:
    """Refuse a tracker whose package is missing, in one line naming the extra (before anything is written)."""
    if report_to != "none" and importlib.util.find_spec(EXTRA[report_to]) is None:
        raise TrainError(f"--report-to {report_to}: the {EXTRA[report_to]} package is not installed; "
                         f"pip install 'medlora[{EXTRA[report_to]}]' (or pass --report-to none)")


def scalars(row: dict) -> dict[str, float]:
    """The tracker tags and values of one metrics.jsonl row (see the module docstring)."""
    return {tag: float(row[key]) for key, tag in TAGS.get(row.get("type"), {}).items() if key in row}


def hyperparameters(config: dict) -> dict[str, int | float | str | bool]:
    """config.json's fields as flat scalars (a list becomes its comma-joined text; None becomes "")."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        flat[key] = "" if value is None else value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return flat


class TensorBoardTracker:
    """Scalars and the config (as text and as TensorBoard's hparams) in `<out>/tensorboard/`.

    A resumed run starts its writer with `purge_step`, so TensorBoard drops the points an interrupted run wrote
    after the checkpoint, as metrics.jsonl drops its rows.
    """

    def __init__(self, out: Path, config: dict, start_step: int):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step + 1 if start_step else None)
        if not start_step:
            self.writer.add_text("config", "```json\n" + json.dumps(config, indent=2) + "\n```", 0)
            for summary in hparams(hyperparameters(config), {}):  # add_hparams without its extra sub-folder
                self.writer.file_writer.add_summary(summary)

    def log(self, row: dict) -> None:
        for tag, value in scalars(row).items():
            self.writer.add_scalar(tag, value, row["step"])

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run in `<out>/wandb/` (offline unless WANDB_MODE is set), the config as its `config`."""

    def __init__(self, out: Path, config: dict, start_step: int):
        import wandb

        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "medlora"), name=out.name, dir=str(out),
                              config=config, mode=os.environ.get("WANDB_MODE", "offline"))

    def log(self, row: dict) -> None:
        values = scalars(row)
        if values:
            self.run.log(values, step=row["step"])

    def close(self) -> None:
        self.run.finish()


def open_tracker(report_to: str, out: Path, config: dict, start_step: int):
    """The tracker `--report-to` names (None for none), started at `start_step` (> 0 on a resumed run)."""
    if report_to == "none":
        return None
    return {"tensorboard": TensorBoardTracker, "wandb": WandbTracker}[report_to](out, config, start_step)
