"""What stands around a training run, in one place: `run_guard(cfg, resume, force)`, the context manager
`recipe.train` runs the recipe in. The recipe itself (`recipe.py`) holds none of it.

Entering it, in order: the config is checked (`TrainConfig.validate`); the processes of a torchrun job join
(`distributed.setup`); SIGINT / SIGTERM are caught (`StopFlag`: inside the loop's `deferred()` block the
run checkpoints after the step and stops); every rank runs `preflight` (the run folder is not overwritten,
the config of a resumed run, the newest intact checkpoint, the base, the data, the tracker) and a refusal on
any rank stops all of them before anything is written; the run folder's lock is taken (a second run on one
folder is refused); `--force` clears the old results.

Leaving it: a fresh start that failed before training produced anything leaves no folder behind; the lock
is released and the process group torn down, whatever happened.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from minillama import LlamaConfig, load_tokenizer
from minillama.gguf import is_gguf, llama_config, read_gguf
from minillama.hub import check_access, is_hub_id
from plumbing.errors import CommandError
from plumbing.signals import StopFlag

from lora.finetune import checkpoint, distributed, run_folder, trackers
from lora.finetune.config import TrainConfig, TrainError, check_resumable
from lora.finetune.records import resolve_dataset, usable_records


@dataclass
class Guarded:
    """What `run_guard` hands the recipe."""

    out: Path                   # the run folder, locked by this run (rank 0)
    info: distributed.DistInfo  # this process's rank, world size and device
    ckpt: Path | None           # the intact checkpoint to resume from (None: start at step 0)
    stop: StopFlag              # SIGINT / SIGTERM, deferred to the end of a step inside `stop.deferred()`
    finished: bool              # --resume on a run that has its DONE already: nothing to do


@contextlib.contextmanager
def run_guard(cfg: TrainConfig, resume: bool = False, force: bool = False) -> Iterator[Guarded]:
    """Check, lock and watch a run folder for the block (see the module docstring).

    Raises:
        TrainError: bad input (exit status 2), on any rank, before anything is written.
    """
    cfg.validate()
    if resume and force:
        raise TrainError("--resume and --force: choose one")
    out = Path(cfg.out).expanduser()
    info = distributed.setup(cfg.device)
    held = None
    with StopFlag() as stop:
        try:
            try:  # every rank checks before any rank writes; a refusal on one rank stops all
                if info.is_main and (out / run_folder.LOCK_NAME).exists():
                    held = run_folder.lock(out)  # another live run is named before anything else
                ckpt, problem = preflight(cfg, out, resume, force, info.world_size), None
            except CommandError as e:
                ckpt, problem = None, e
            refusals = [p for p in distributed.gather_objects(problem and str(problem), info) if p]
            if problem is not None:
                raise problem
            if refusals:
                raise TrainError(refusals[0])
            if resume and (out / "DONE").is_file():
                print(f"{out}: this run has finished already (DONE)", file=sys.stderr)
                yield Guarded(out, info, None, stop, finished=True)
                return
            created = not out.exists()
            if info.is_main and held is None:
                held = run_folder.lock(out)
            try:
                if info.is_main and force:
                    run_folder.clear_results(out)
                yield Guarded(out, info, ckpt, stop, finished=False)
            except BaseException:  # a fresh start that fails before training leaves no trace
                if created and info.is_main and not any((out / n).exists() for n in run_folder.TRAINED_NAMES):
                    held.release()
                    shutil.rmtree(out, ignore_errors=True)
                raise
        finally:
            if held is not None:
                held.release()
            distributed.teardown(info)


def preflight(cfg: TrainConfig, out: Path, resume: bool, force: bool, world_size: int) -> Path | None:
    """Everything that can be refused is refused here, before the run folder is touched.

    Returns:
        The checkpoint to resume from (None for a fresh run, a finished one, or a resumed one without any).
    """
    ckpt = None
    if resume:
        check_resumable(cfg, run_folder.read_config(out), str(out / "config.json"))
        ckpt, notes = checkpoint.latest_intact(out, world_size)
        for note in notes:
            print(f"warning: skipping checkpoint {note}", file=sys.stderr)
        if ckpt is None and not (out / "DONE").is_file():
            print(f"{out}: no intact checkpoint yet; training starts again from step 0", file=sys.stderr)
    run_folder.check_out(out, resume, force)
    trackers.check_installed(cfg.report_to)
    if resume and (out / "DONE").is_file():
        return None
    if cfg.fsdp and world_size < 2:
        raise TrainError("--fsdp: shards the base over several processes; start the run with torchrun, e.g. "
                         "`torchrun --standalone --nproc_per_node 2 scripts/train.py ... --fsdp`")
    if cfg.batch_size % (cfg.micro_batch_size * world_size):
        raise TrainError(f"--batch-size: {cfg.batch_size} is not a multiple of --micro-batch-size x processes "
                         f"= {cfg.micro_batch_size * world_size}")
    if cfg.base != "demo":
        if Path(cfg.base).expanduser().is_dir():
            LlamaConfig.from_file(Path(cfg.base).expanduser() / "config.json")
        elif is_gguf(Path(cfg.base).expanduser()):  # a llama.cpp file: its header and tokenizer, read now
            llama_config(read_gguf(Path(cfg.base).expanduser()))
            load_tokenizer(Path(cfg.base).expanduser())
        elif not is_hub_id(cfg.base):
            raise TrainError(f"--base {cfg.base}: no such model folder or .gguf file (nor a Hugging Face "
                             "Hub id)")
        else:
            check_access(cfg.base, "pass --base DIR with a local copy")
    if cfg.data != "demo":
        usable_records(resolve_dataset(cfg.data), cfg.on_bad_record)
    return ckpt
