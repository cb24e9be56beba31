"""LoRA fine-tuning of a Llama on instruction data: the paper's section 4.3 run, from the command line.

    python scripts/train.py                                   # CPU demo (tiny Llama, generated data)
    python scripts/train.py --preset paper                    # Llama-2-7b-chat + GenMedGPT-5k, 1 GPU
    torchrun --nproc_per_node 4 scripts/train.py --preset paper --batch-size 4            # DDP
    torchrun --nproc_per_node 4 scripts/train.py --preset paper --batch-size 4 --fsdp     # FSDP2
    python scripts/train.py --resume --out runs/paper         # continue an interrupted run exactly

The flags are `TrainConfig`'s fields (`--help` shows each one's reason and default); the run itself is
`lora.finetune.train(cfg)` (`lora/finetune/recipe.py`, read top to bottom). Exit status: 0 done, 1 failure
while running (disk full ...), 2 bad input, 130/143 interrupted by SIGINT/SIGTERM (docs/cli.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__:  # imported: medlora_scripts.X (the console command) or scripts.X
    from .installed import installed
else:  # run as a file: python scripts/X.py
    from installed import installed

with installed():
    from plumbing.threads import prepare_openmp

    prepare_openmp()  # before torch is imported: OpenMP reads its wait policy once (plumbing/threads.py)

    from lora.finetune import run_folder, train
    from lora.finetune.flags import config_from_args, resumed_config
    from plumbing.command import run_cli
    from plumbing.errors import CommandError


def resume_hint(out: Path) -> str:
    """What to run after an interruption: resume from the newest checkpoint, or start again."""
    if any((out / "checkpoints").glob("step_*")):
        return "rerun with --resume to continue from the last checkpoint"
    if (out / "config.json").is_file():
        return "no checkpoint was written yet; rerun with --resume to start again from step 0"
    return "nothing was trained yet; rerun the same command" + (" with --force" if out.exists() else "")


def run(argv: list[str] | None, where: list | None = None) -> Path:
    """The flags as a `TrainConfig` (on --resume: the run's own, with this command's flags on top), the CPU
    thread policy (`--num-threads`, re-measured after every step), then `train`; errors are raised (`main`
    prints them). `where` receives the run folder once known."""
    from plumbing import threads

    cfg, args, explicit = config_from_args(argv)
    out = Path(cfg.out).expanduser()
    if where is not None:
        where.append(out)
    if args.resume:
        run_folder.refuse_if_busy(out)  # another live run is named before its folder is read
        cfg = resumed_config(run_folder.read_config(out), explicit)
    threads.configure_threads(cfg.num_threads)
    return train(cfg, resume=args.resume, force=args.force, on_step=lambda step: threads.tick())


def main(argv: list[str] | None = None) -> int:
    """Console entry (`medlora-train`): one `error: ...` line and a documented exit status on failure."""
    where: list = []

    def body() -> None:
        run(argv, where)

    return run_cli(body, handled=(CommandError, OSError),
                   interrupted=lambda name: f"interrupted ({name}); "
                                            f"{resume_hint(where[0]) if where else 'nothing was written'}",
                   disk_full="; free space and rerun with --resume")


if __name__ == "__main__":
    sys.exit(main())
