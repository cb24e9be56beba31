"""`reproduce(cfg) -> run folder`: the whole paper in one call, resumable, one reproduction per folder.

    from pipeline import preset, reproduce
    reproduce(preset("demo"))          # what `python scripts/reproduce.py` does

Rerunning resumes where it stopped (each stage is skipped when its outputs are complete); a second
reproduction of the same folder is refused while the first runs. Under torchrun every rank trains and
generates its share; rank 0 alone runs stages 3-6.
"""
from __future__ import annotations

from pathlib import Path

from lora.finetune import distributed
from minillama.hub import check_access
from plumbing import threads
from plumbing.locks import folder_lock
from plumbing.signals import StopFlag

from pipeline.book import log
from pipeline.config import ConfigError, ReproduceConfig
from pipeline.stages import LOCAL_COPY, Pipeline, train_base


def reproduce(cfg: ReproduceConfig, force: bool = False, command: str | None = None) -> Path:
    """Run every stage of the reproduction into `cfg.run_dir`; returns the report's path (rank 0).

    Args:
        cfg: the resolved configuration (`pipeline.config.preset` / `load_config`, then overrides).
        force: redo every stage (the run folder's results are deleted first).
        command: the command line recorded in `pipeline.json` (what ran on this folder).

    Raises:
        CommandError: bad input (exit status 2: a bad flag in the config's lists, a folder another
            reproduction holds, a missing API key) or a stage's failure (1); Interrupted: SIGINT / SIGTERM.
    """
    with StopFlag():
        threads.configure_threads(0)  # the CPU thread policy for generation (training sets its own)
        if not cfg.train_run and not (Path(cfg.run_dir) / "train" / "DONE").exists():
            check_access(train_base(cfg), LOCAL_COPY)  # before anything is written or printed
        info = distributed.setup(cfg.generation.device)
        lock = None
        try:
            pipe = Pipeline(cfg, force=force, info=info)  # every stage's arguments checked here
            if info.is_main:
                lock = folder_lock(cfg.run_dir, ".reproduce.lock")
                if not lock.acquire():
                    lock = None
                    raise ConfigError(f"--run-dir {cfg.run_dir}: another reproduction is working in this folder; "
                                      "wait for it or choose another --run-dir")
            pipe.state["command"] = command
            pipe.prepare()
            log(f"reproduce: preset {cfg.preset}, run folder {pipe.run}")
            trained = not force and (pipe.run / "train" / "DONE").exists()  # stage 1 will be skipped
            log(f"reproduce: {work_plan(None if trained else pipe.plan.train, cfg)}")
            train_run = pipe.stage_train()
            pipe.stage_generate(train_run)
            if not info.is_main:
                return pipe.run
            pipe.stage_track_a()
            pipe.stage_grounding()
            pipe.stage_track_b()
            report = pipe.stage_report()
            log(headline(report))
            log(f"reproduce: report written to {report}")
            return report
        finally:
            if lock is not None:
                lock.release()
            distributed.teardown(info)


def headline(report: Path) -> str:
    """What the run found, for the terminal: the report's Summary and Table 1 (the rest is in the report)."""
    text = Path(report).read_text(encoding="utf-8")
    parts = []
    for title in ("## Summary", "## Table 1:"):
        start = text.find(title)
        if start >= 0:
            end = text.find("\n## ", start + 1)
            section = text[start:end if end >= 0 else len(text)].strip()
            parts.append(section.split("\n\n**N =")[0])  # Table 1 without its notes
    return "\n\n".join(parts) + "\n"


def work_plan(train, cfg: ReproduceConfig) -> str:
    """One line on the work ahead (training and generation then show progress bars with an ETA); `train` is None
    when the training is given (`--train-run`) or already done in the run folder."""
    if train is None and not cfg.train_run:
        steps = f"the finished training run {Path(cfg.run_dir) / 'train'}"
    elif train is None:
        steps = f"the finished training run {cfg.train_run}"
    else:
        length = (f"{train.max_steps} optimiser steps" if train.max_steps > 0 else
                  f"{train.num_epochs:g} epoch" + ("" if train.num_epochs == 1 else "s"))
        steps = (f"training {length} (batches of {train.batch_size} pairs) on {train.base} ({train.data}, "
                 f"{train.val_size} held out)")
    g = cfg.generation
    return (f"{steps}; then base and fine-tuned answers to each held-out pair (at most {g.max_new_tokens} new "
            f"tokens, batches of {g.batch_size}); progress bars show an ETA")
