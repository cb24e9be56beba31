"""The whole paper in one command: train, generate, Track A, Track B, report (the paper's Figure 2).

    python scripts/reproduce.py                      # CPU demo, offline, minutes (preset demo)
    python scripts/reproduce.py --judge-standin      # ... with Track B against the loopback stand-in
    python scripts/reproduce.py --preset paper --judge-base-url URL --judge-model gpt-4  # one GPU
    torchrun --nproc_per_node 4 scripts/reproduce.py --preset paper ...  # DDP training, sharded generation

Stages, each writing into the run folder (default `runs/reproduce-<preset>`) and skipped when its
outputs are complete, so an interrupted reproduction resumes where it stopped:

1. train     `scripts/train.py` into `train/` (done when `train/DONE` exists), or `--train-run DIR`
2. generate  `generations/{base,finetuned}.jsonl` on exactly the held-out ids (resumable per batch)
3. track_a   `python -m evalkit score` into `track_a/`
4. grounding `python -m evalkit ground` into `grounding/`: Table 3 against the disease database (`--db`)
5. track_b   `python -m judge run` into `track_b/`, only when a judge endpoint is configured
6. report    `report.md`, `report.html`, `report.json`, `figures/` (always rewritten: it only reads the files
             above, and Track C's ratings store when `--human-store` names one)

Stages 2-5 write `stage.done` (with a fingerprint of their inputs) when they finish; `pipeline.json`
keeps the resolved config and the wall time of every attempt of every stage (`evalkit/reproduce/`).
Under torchrun every rank trains and generates its share; rank 0 alone runs stages 3-6.
Exit status: 0 done, 1 failure while running, 2 bad input, 130/143 interrupted (rerun to resume).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from minillama.threads import prepare_openmp

prepare_openmp()  # before torch is imported, since OpenMP reads its wait policy once (minillama/threads.py)

from evalkit.reproduce.config import PRESETS, ConfigError, ReproduceConfig, load_config, preset
from evalkit.reproduce.stages import STAGE_DIRS, StageBook, call_cli, log, now

STANDIN = "standin"  # judge endpoint placeholder: the loopback stand-in, started by the stage itself
LOCAL_COPY = 'pass a local copy with --config (train_args: ["--base", "DIR"])'


class Pipeline(StageBook):
    """Runs the stages in order on one run folder; see the module docstring."""

    def __init__(self, cfg: ReproduceConfig, force: bool, info):
        super().__init__(cfg, force=force, write=info.is_main)
        self.info = info

    def stage_train(self):
        """Stage 1: a finished training run (trained here, resumed, or given with --train-run)."""
        from lora.finetune.run_folder import TrainRun

        if self.cfg.train_run:
            log(f"[train] using the finished run {self.cfg.train_run}")
            self.note("train", status="taken", path=self.cfg.train_run)
            return TrainRun.open(self.cfg.train_run)
        train_dir = self.run / "train"
        if (train_dir / "DONE").exists() and not self.force:
            log(f"[train] complete in {train_dir} (DONE), skipped")
            self.state["stages"].setdefault("train", {"status": "done", "attempts": [], "wall_s": None,
                                                      "note": "finished by an earlier invocation"})
            self.save()
            return TrainRun.open(train_dir)
        from lora.finetune.checkpoint import latest_intact

        resumable = not self.force and latest_intact(train_dir, self.info.world_size)[0] is not None
        argv = ["--no-demo-eval", *self.cfg.train_args, "--out", str(train_dir),
                "--resume" if resumable else "--force"]
        log(f"[train] scripts/train.py {' '.join(argv)}")
        from medlora_scripts import train

        with self.timed("train"):
            self.note("train", path=str(train_dir), started_at=now())
            call_cli(train.main, argv, "training")
        return TrainRun.open(train_dir)

    def stage_generate(self, train_run) -> None:
        """Stage 2: base and fine-tuned responses on the held-out ids (sharded over torchrun ranks)."""
        from evalkit.reproduce.generation import run_generation
        from minillama.hub import check_access

        check_access(train_run.base_model, LOCAL_COPY)
        fingerprint = {"train_run": str(train_run.path.resolve()), "adapter_sha256": train_run.adapter_sha256,
                       "generation": self.state["config"]["generation"]}
        self.staged("generate", fingerprint, lambda out: run_generation(train_run, out, self.cfg.generation,
                                                                        self.info))

    def pairs(self) -> list[str]:
        gen = self.run / STAGE_DIRS["generate"]
        return [str(gen / "base.jsonl"), str(gen / "finetuned.jsonl")]

    def pairs_fingerprint(self) -> dict:
        from lora.finetune.files import sha256_file
        return {Path(p).name: sha256_file(p) for p in self.pairs()}

    def stage_track_a(self) -> None:
        """Stage 3: lexical metrics and Table 1 (evalkit); leftovers of a killed attempt are replaced."""
        from evalkit import cli as evalkit_cli

        def work(out: Path) -> None:
            argv = ["score", *sum((["--pairs", p] for p in self.pairs()), []), "--out", str(out), "--force",
                    *self.cfg.evalkit_args]
            call_cli(evalkit_cli.main, argv, "Track A (evalkit score)")
        fingerprint = {"pairs": self.pairs_fingerprint(), "evalkit_args": self.cfg.evalkit_args}
        self.staged("track_a", fingerprint, work)

    def stage_grounding(self) -> None:
        """Stage 4: clinical grounding and Table 3 against the disease database (evalkit ground)."""
        from evalkit import cli as evalkit_cli
        from evalkit.reproduce.databases import resolve_db
        from lora.finetune.files import sha256_file

        if not self.cfg.db:
            log("[grounding] skipped: no disease database configured (--db PATH)")
            self.note("grounding", status="skipped", reason="no disease database configured")
            return
        db = resolve_db(self.cfg.db, self.run)

        def work(out: Path) -> None:
            argv = ["ground", *sum((["--pairs", p] for p in self.pairs()), []), "--db", str(db), "--out", str(out),
                    "--force", *ground_args(self.cfg.evalkit_args)]
            call_cli(evalkit_cli.main, argv, "grounding (evalkit ground)")
        fingerprint = {"pairs": self.pairs_fingerprint(), "db_sha256": sha256_file(db),
                       "args": ground_args(self.cfg.evalkit_args)}
        self.staged("grounding", fingerprint, work)

    def stage_track_b(self) -> None:
        """Stage 5: the LLM judge and Table 2, when an endpoint is configured (see `judge_endpoint`)."""
        out = self.run / STAGE_DIRS["track_b"]
        base_url, model = judge_endpoint(self.cfg)
        if not base_url:
            if (out / "stage.done").exists():
                log(f"[track_b] no judge endpoint configured; keeping the earlier judgments in {out}")
                return
            log("[track_b] skipped: no judge endpoint configured; enable it with --judge-base-url URL (any "
                "OpenAI-compatible server: OpenAI, vLLM, llama.cpp, Ollama) or OPENAI_BASE_URL, or with "
                "--judge-standin (offline loopback stand-in, synthetic scores)")
            self.note("track_b", status="skipped", reason="no judge endpoint configured")
            return
        from judge import cli as judge_cli

        def work(out: Path) -> None:
            url, stop = base_url, None
            if url == STANDIN:  # started only when the stage runs, stopped when it ends
                from judge.standin import start_standin

                url, stop = start_standin(port=0)
                log(f"[track_b] judge: loopback stand-in at {url} (synthetic scores: checks the plumbing, "
                    "not the models)")
            argv = ["run", *sum((["--pairs", p] for p in self.pairs()), []), "--out", str(out),
                    "--base-url", url, *(["--model", model] if model else []), *self.cfg.judge.args]
            try:
                call_cli(judge_cli.main, argv, "Track B (judge run; rerun to resume)")
            finally:
                if stop is not None:
                    stop()
        fingerprint = {"pairs": self.pairs_fingerprint(), "base_url": base_url, "model": model,
                       "args": self.cfg.judge.args}
        self.staged("track_b", fingerprint, work)

    def stage_report(self) -> Path:
        """Stage 6: report.md, report.html, report.json and figures (cheap, always rewritten)."""
        from evalkit.reproduce.report import write_report

        with self.timed("report"):
            path = write_report(self.run, self.state)
        write_report(self.run, self.state)  # once more, so the manifest shows the report's own time
        return path


def train_base(cfg: ReproduceConfig) -> str | None:
    """The base model training will load: `--base` in train_args, else the preset's."""
    args = cfg.train_args
    for i, a in enumerate(args):
        if a == "--base" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--base="):
            return a.split("=", 1)[1]
    return cfg.base_model


def ground_args(evalkit_args: list[str]) -> list[str]:
    """The flags of `evalkit score` that `evalkit ground` shares (exclusions, seed, resampling counts)."""
    out, i = [], 0
    while i < len(evalkit_args):
        a = evalkit_args[i]
        if a in ("--keep-truncated", "--strict-ids"):
            out.append(a)
        elif a in ("--seed", "--bootstrap", "--permutations") and i + 1 < len(evalkit_args):
            out += [a, evalkit_args[i + 1]]
            i += 1
        elif a.split("=", 1)[0] in ("--seed", "--bootstrap", "--permutations"):
            out.append(a)
        i += 1
    return out


def judge_endpoint(cfg: ReproduceConfig) -> tuple[str | None, str | None]:
    """(base_url, model) from the flags / config, else `OPENAI_BASE_URL`; `STANDIN` for the stand-in."""
    if cfg.judge.standin:
        return STANDIN, cfg.judge.model or "standin"
    return cfg.judge.base_url or os.environ.get("OPENAI_BASE_URL") or None, cfg.judge.model


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="reproduce.py", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", help="JSON config file (see evalkit/reproduce/config.py)")
    src.add_argument("--preset", choices=PRESETS, help="built-in settings (default: demo)")
    p.add_argument("--run-dir", help="run folder (default: runs/reproduce-<preset>)")
    p.add_argument("--judge-base-url", help="OpenAI-compatible base URL for Track B (default: $OPENAI_BASE_URL)")
    p.add_argument("--judge-model", help="judge model name")
    p.add_argument("--judge-standin", action="store_true", help="Track B against the offline loopback stand-in")
    p.add_argument("--skip-train", action="store_true", help="take a finished run folder (needs --train-run)")
    p.add_argument("--train-run", help="a finished scripts/train.py run folder")
    p.add_argument("--db", help="disease database CSV for the grounding stage (default: the preset's: demo's own "
                                "table, or ChatDoctor's format_dataset.csv downloaded for the paper preset)")
    p.add_argument("--human-store", help="Track C ratings store (python -m judge.human serve --store PATH) to report")
    p.add_argument("--force", action="store_true", help="redo every stage (the run folder's results are deleted)")
    return p


def resolve_config(args) -> ReproduceConfig:
    """The config (file or preset, then flags), fully checked: nothing is written before this passes."""
    from lora.finetune.run_folder import TrainRun

    cfg = load_config(args.config) if args.config else preset(args.preset or "demo")
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
    if cfg.db not in (None, "demo", "chatdoctor") and not Path(cfg.db).expanduser().is_file():
        raise ConfigError(f"--db {cfg.db}: no such file (a disease database CSV, see docs/grounding.md)")
    if args.human_store:
        cfg.human_store = args.human_store

    g = cfg.generation
    if g.max_new_tokens < 1 or g.batch_size < 1 or (g.limit is not None and g.limit < 1):
        raise ConfigError("generation: max_new_tokens, batch_size and limit must be >= 1")
    if g.dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"generation.dtype: {g.dtype!r} is not float32, bfloat16 or float16")
    if Path(cfg.run_dir).exists() and not Path(cfg.run_dir).is_dir():
        raise ConfigError(f"--run-dir {cfg.run_dir}: exists and is not a folder")
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Console entry (`medlora-reproduce`); returns the exit status (see the module docstring)."""
    from lora.finetune import distributed
    from lora.finetune.files import FolderLock, is_disk_full
    from lora.finetune.signals import StopFlag
    from minillama import threads
    from minillama.hub import check_access
    from minillama.jobcontrol import CommandError, Interrupted

    info, lock = None, None
    try:
        with StopFlag():
            args = build_parser().parse_args(argv)
            cfg = resolve_config(args)
            threads.configure_threads(0)  # the CPU thread policy for generation (training sets its own)
            if not cfg.train_run and not (Path(cfg.run_dir) / "train" / "DONE").exists():
                check_access(train_base(cfg), LOCAL_COPY)  # before anything is written or printed
            info = distributed.setup(cfg.generation.device)
            if info.is_main:
                lock = FolderLock(cfg.run_dir, ".reproduce.lock")
                if not lock.acquire():
                    lock = None
                    raise ConfigError(f"--run-dir {cfg.run_dir}: another reproduction is working in this folder; "
                                      "wait for it or choose another --run-dir")
            pipe = Pipeline(cfg, force=args.force, info=info)
            pipe.state["command"] = " ".join(["scripts/reproduce.py", *(sys.argv[1:] if argv is None else argv)])
            pipe.prepare()
            log(f"reproduce: preset {cfg.preset}, run folder {pipe.run}")
            train_run = pipe.stage_train()
            pipe.stage_generate(train_run)
            if not info.is_main:
                return 0
            pipe.stage_track_a()
            pipe.stage_grounding()
            pipe.stage_track_b()
            report = pipe.stage_report()
            log(f"reproduce: report written to {report}")
            return 0
    except Interrupted as e:
        print(f"interrupted ({e}); rerun the same command to resume", file=sys.stderr)
        return e.exit_status
    except CommandError as e:  # every package's error class: bad input 2, a failure while running 1
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"error: {e.filename or 'run folder'}: {e.strerror or e}"
              + ("; free space and rerun to resume" if is_disk_full(e) else ""), file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()
        if info is not None:
            distributed.teardown(info)


if __name__ == "__main__":
    sys.exit(main())
