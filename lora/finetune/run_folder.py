"""The run folder `scripts/train.py` writes: one run at a time (a lock), never overwritten by accident, its log.

Layout (docs/training.md): `config.json`, `split.json`, `data_report.json`, `metrics.jsonl`, `checkpoints/`,
`adapter/` (best), `adapter_last/`, `loss.png`, `DONE`, and for the demo `base/`, `demo_data.json`,
`demo_eval.json`. `.lock` is held while a run works. A finished folder is read back by `trained_run.py`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from plumbing.durable import write_text_atomic
from plumbing.locks import FileLock, folder_lock

from lora.finetune import trackers
from lora.finetune.config import TrainConfig, TrainError, config_to_dict

# Everything a run writes into its folder; any of these present means the folder holds results.
RESULT_NAMES = ("config.json", "split.json", "data_report.json", "metrics.jsonl", "loss.png", "DONE",
                "adapter", "adapter_last", "checkpoints", "base", "demo_data.json", "demo_eval.json", "tensorboard",
                "wandb")
# What only training produces: a run folder created by a start that failed before any of these is removed.
TRAINED_NAMES = ("checkpoints", "adapter", "adapter_last", "DONE")
LOCK_NAME = ".lock"


def check_out(out: Path, resume: bool, force: bool) -> None:
    """Refuse, before anything is written, what would overwrite results (so a bad command changes nothing)."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out}: exists and is not a folder")
    present = [n for n in RESULT_NAMES if (out / n).exists()]
    if not resume and present and not force:
        raise TrainError(f"--out {out}: already holds results ({', '.join(present)}); pass --resume to continue "
                         "that run or --force to delete them")


def read_config(out: Path) -> dict:
    """The `config.json` of a run to resume, or one line saying what is wrong (and what to run instead)."""
    if not out.is_dir():
        raise TrainError(f"--out {out}: not a folder; there is no run to resume (start it without --resume)")
    if not (out / "config.json").is_file():
        raise TrainError(f"--out {out}: the run stopped before it wrote config.json, so there is nothing to resume; "
                         "start it again with the same flags and --force instead of --resume")
    try:
        saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TrainError(f"--out {out}: cannot read the run's config.json ({type(e).__name__}); the run cannot "
                         "be resumed (start a new --out)") from None
    if not isinstance(saved, dict):
        raise TrainError(f"--out {out}: config.json is not a JSON object; start a new --out")
    return saved


def lock(out: Path) -> FileLock:
    """Take the run folder's exclusive lock (creating the folder); refuse while another run holds it."""
    held = folder_lock(out, LOCK_NAME)
    if not held.acquire():
        raise TrainError(f"--out {out}: another training run is working in this folder (it holds {held.path}); "
                         "wait for it or choose another --out")
    return held


def refuse_if_busy(out: Path) -> None:
    """Refuse at once when another live run holds the folder's lock (checked before the folder is read)."""
    if (out / LOCK_NAME).is_file():
        lock(out).release()


def clear_results(out: Path) -> None:
    """Delete this project's results from the folder (and nothing else): `--force`, or a failed start's."""
    for name in RESULT_NAMES:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def read_rows(path: Path) -> list[dict]:
    """The complete rows of a metrics.jsonl; a torn last line (a crash mid-write) is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


class MetricsLog:
    """Appends one JSON row per call to metrics.jsonl (when `write`: rank 0), and hands it to `tracker` (the
    `--report-to` experiment tracker, `trackers.py`), which is closed when the log is used as a context manager.

    On a resumed run the rows after the checkpoint's step (and any torn line) are dropped first, so
    the file ends equal to that of an uninterrupted run; a run started again from step 0 drops them all.
    """

    def __init__(self, path: Path, start_step: int, write: bool, tracker=None):
        self.path, self.write, self.tracker = path, write, tracker
        if write and path.exists():
            kept = [r for r in read_rows(path) if r["step"] <= start_step] if start_step > 0 else []
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))

    def __call__(self, row: dict) -> None:
        if self.write:
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
            except OSError as e:
                raise OSError(e.errno, e.strerror, str(self.path)) from None
            if self.tracker is not None:
                self.tracker.log(row)

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc) -> None:
        if self.tracker is not None:
            self.tracker.close()


def open_log(cfg: TrainConfig, out: Path, start_step: int, write: bool) -> MetricsLog:
    """The run's metrics.jsonl from `start_step` on, feeding the `--report-to` tracker (opened on the writing rank,
    with the config as its hyper-parameters); use it as a context manager to close the tracker."""
    tracker = trackers.open_tracker(cfg.report_to, out, config_to_dict(cfg), start_step) if write else None
    return MetricsLog(out / "metrics.jsonl", start_step, write, tracker)
