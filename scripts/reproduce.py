"""The whole paper in one command: train, generate, Track A, grounding, Track B (and Track C's ratings when a
store is given), report: the paper's Figure 2, and beyond it.

    python scripts/reproduce.py                      # CPU demo, offline, minutes (preset demo)
    python scripts/reproduce.py --judge-standin      # ... with Track B against the loopback stand-in
    python scripts/reproduce.py --preset smollm2 --judge-standin  # the paper's experiment on SmolLM2-135M, CPU
    python scripts/reproduce.py --preset smollm2 --full           # ... with the paper's whole epoch (54 min here)
    python scripts/reproduce.py --preset paper --judge-base-url URL --judge-model gpt-4  # one GPU
    torchrun --nproc_per_node 4 scripts/reproduce.py --preset paper ...  # DDP training, sharded generation

Stages, each writing into the run folder (default `runs/reproduce-<preset>`) and skipped when its
outputs are complete, so an interrupted reproduction resumes where it stopped:

1. train     LoRA fine-tuning into `train/` (done when `train/DONE` exists), or `--train-run DIR`
2. generate  `generations/{base,finetuned}.jsonl` on exactly the held-out ids (resumable per batch)
3. track_a   lexical metrics and Table 1 into `track_a/`
4. grounding Table 3 against the disease database (`--db`) into `grounding/`
5. track_b   the LLM judge and Table 2 into `track_b/`, only when a judge endpoint is configured
6. report    `report.md`, `report.html`, `report.json`, `figures/` (always rewritten: it only reads the files
             above, and Track C's ratings store when `--human-store` names one)

This file turns the flags into a `ReproduceConfig`; the work is `pipeline.reproduce(cfg)` (pipeline/).
Exit status: 0 done, 1 failure while running, 2 bad input, 130/143 interrupted (rerun to resume).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__:  # imported: medlora_scripts.X (the console command) or scripts.X
    from .installed import installed
else:  # run as a file: python scripts/X.py
    from installed import installed

with installed():
    from plumbing.threads import prepare_openmp

    prepare_openmp()  # before torch is imported: OpenMP reads its wait policy once (plumbing/threads.py)

    from lora.finetune.trained_run import TrainRun
    from minillama.hub import is_hub_id
    from pipeline import ConfigError, ReproduceConfig, load_config, preset, reproduce
    from pipeline.config import PRESETS
    from pipeline.databases import NAMED as NAMED_DBS
    from plumbing.command import ArgumentParser, run_cli
    from plumbing.errors import CommandError


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(raises=ConfigError, description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", help="JSON config file (see pipeline/config.py)")
    src.add_argument("--preset", choices=PRESETS, help="built-in settings (default: demo)")
    p.add_argument("--full", action="store_true", help="with --preset smollm2: the paper's full protocol (one "
                                                        "epoch over the 5,332 training pairs; run folder "
                                                        "runs/reproduce-smollm2-full; docs/reproduce.md)")
    p.add_argument("--base", help="the base model instead of the preset's: a local folder, a .gguf file or a Hub id "
                                  "(training's base: the config's train.base)")
    p.add_argument("--run-dir", help="run folder (default: runs/reproduce-<preset>)")
    p.add_argument("--judge-base-url", help="OpenAI-compatible base URL for Track B (default: $OPENAI_BASE_URL)")
    p.add_argument("--judge-model", help="judge model name sent to the endpoint, with --judge-base-url or "
                                         "OPENAI_BASE_URL (default: $JUDGE_MODEL, else gpt-4o; the stand-in: standin)")
    p.add_argument("--judge-standin", action="store_true", help="Track B against the offline loopback stand-in")
    p.add_argument("--skip-train", action="store_true", help="take a finished run folder (needs --train-run)")
    p.add_argument("--train-run", help="a finished scripts/train.py run folder")
    p.add_argument("--db", help="disease database CSV for the grounding stage, or chatdoctor (ChatDoctor's "
                                "format_dataset.csv, embedded: offline), chatdoctor@download (the public file) "
                                "or demo (default: the preset's: demo's own table; chatdoctor for paper and smollm2)")
    p.add_argument("--human-store", help="Track C ratings store (python -m judge.human serve --store PATH) to report")
    p.add_argument("--force", action="store_true", help="redo every stage (the run folder's results are deleted)")
    return p


def resolve_config(args) -> ReproduceConfig:
    """The config (file or preset, then flags), fully checked: nothing is written before this passes."""
    if args.full and args.preset != "smollm2":
        raise ConfigError("--full: the paper's full protocol on SmolLM2; use it with --preset smollm2 (in a "
                          "--config file: \"full\": true)")
    cfg = load_config(args.config) if args.config else preset(args.preset or "demo", full=args.full)
    if args.base:
        if not is_hub_id(args.base) and not Path(args.base).expanduser().exists():
            raise ConfigError(f"--base {args.base}: no such file or folder (a local model folder, a .gguf file or "
                              "a Hub id org/name)")
        cfg.train.base = args.base
    if cfg.train_run:  # a config file's relative path is taken from the cwd, as --train-run's is
        cfg.train_run = str(Path(cfg.train_run).expanduser().resolve())
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.skip_train and not (args.train_run or cfg.train_run):
        raise ConfigError("--skip-train: needs --train-run DIR (a finished scripts/train.py run folder)")
    if args.train_run:
        cfg.train_run = str(Path(args.train_run).resolve())
    if cfg.train_run:
        TrainRun.open(cfg.train_run)  # a missing or unfinished run is refused before anything is written
    if args.judge_standin:
        cfg.judge.standin = True
    if args.judge_base_url:
        cfg.judge.base_url = args.judge_base_url
    if args.judge_model:
        cfg.judge.model = args.judge_model
    if args.db:
        cfg.db = args.db
    if cfg.db not in (None, *NAMED_DBS) and not Path(cfg.db).expanduser().is_file():
        raise ConfigError(f"--db {cfg.db}: no such file (a disease database CSV, see docs/grounding.md)")
    if args.human_store:
        cfg.human_store = args.human_store

    g = cfg.generation
    if g.max_new_tokens < 1 or g.batch_size < 1 or (g.limit is not None and g.limit < 1):
        raise ConfigError("generation: max_new_tokens, batch_size and limit must be >= 1")
    if g.dtype not in ("float32", "float64", "bfloat16", "float16"):
        raise ConfigError(f"generation.dtype: {g.dtype!r} is not float32, float64, bfloat16 or float16")
    if Path(cfg.run_dir).exists() and not Path(cfg.run_dir).is_dir():
        raise ConfigError(f"--run-dir {cfg.run_dir}: exists and is not a folder")
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Console entry (`medlora-reproduce`); returns the exit status (see the module docstring)."""
    def body() -> None:
        args = build_parser().parse_args(argv)
        command = " ".join(["scripts/reproduce.py", *(sys.argv[1:] if argv is None else argv)])
        reproduce(resolve_config(args), force=args.force, command=command)

    return run_cli(body, handled=(CommandError, OSError),
                   interrupted=lambda name: f"interrupted ({name}); rerun the same command to resume",
                   disk_full="; free space and rerun to resume")


if __name__ == "__main__":
    sys.exit(main())
