"""The whole paper in one command: train, generate, Track A, Track B, report (the paper's Figure 2).

    python scripts/reproduce.py                      # CPU demo, offline, minutes (preset demo)
    python scripts/reproduce.py --judge-standin      # ... with Track B against the loopback stand-in
    python scripts/reproduce.py --preset paper --judge-base-url URL --judge-model gpt-4  # one GPU

Stages, each writing into the run folder (default `runs/reproduce-<preset>`) and skipped when its
outputs are complete, so an interrupted reproduction resumes where it stopped:

1. train     `scripts.train.main` into `train/` (done when `train/DONE` exists), or `--train-run DIR`
2. generate  `generations/{base,finetuned}.jsonl` on exactly the held-out ids (resumable per item)
3. track_a   `python -m evalkit score` into `track_a/`
4. track_b   `python -m judge run` into `track_b/`, only when a judge endpoint is configured
5. report    `report.md`, `report.json`, `figures/` (always rewritten: it only reads the files above)

Stages 2-4 write `stage.done` (with a fingerprint of their inputs) when they finish; `pipeline.json`
keeps the resolved config and the wall time of every stage.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.manifest import sha256_file, write_json_atomic  # noqa: E402
from scripts.pipeline_config import (PRESETS, ConfigError, PipelineError, ReproduceConfig,  # noqa: E402
                                     load_config, preset)

STANDIN = "standin"  # judge endpoint placeholder: the loopback stand-in, started by the stage itself
STAGE_DIRS = {"generate": "generations", "track_a": "track_a", "track_b": "track_b"}
HF_ACCESS = ("request access at https://huggingface.co/{repo} (Meta's licence form), then run "
             "`huggingface-cli login` or set HF_TOKEN on a machine that can reach huggingface.co, "
             "or pass a local copy with --config (train_args: [\"--base\", \"DIR\"])")


def log(message: str) -> None:
    print(message, flush=True)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Pipeline:
    """Runs the stages in order on one run folder; see the module docstring."""

    def __init__(self, cfg: ReproduceConfig, force: bool = False):
        self.cfg, self.force = cfg, force
        self.run = Path(cfg.run_dir)
        self.state_path = self.run / "pipeline.json"
        self.state: dict = {"config": cfg.to_dict(), "stages": {}}

    # ----- bookkeeping -------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the run folder; refuse to resume one made with other settings (unless --force)."""
        if self.force:
            for d in list(STAGE_DIRS.values()) + ["figures"]:
                shutil.rmtree(self.run / d, ignore_errors=True)
            for f in ("report.md", "report.json", "pipeline.json"):
                (self.run / f).unlink(missing_ok=True)
        self.run.mkdir(parents=True, exist_ok=True)
        if self.state_path.exists():
            old = json.loads(self.state_path.read_text(encoding="utf-8"))
            keys = ("preset", "train_args", "train_run", "generation", "evalkit_args")
            changed = [k for k in keys if old.get("config", {}).get(k) != self.state["config"][k]]
            if changed:
                raise ConfigError(f"{self.state_path}: this run folder was made with other settings "
                                  f"({', '.join(changed)}); pass --force to redo it or choose another --run-dir")
            self.state["stages"] = old.get("stages", {})
            self.state["commands"] = old.get("commands", [])
        self.state.setdefault("commands", []).append({"command": self.state.get("command"), "at": now()})
        self.save()

    def save(self) -> None:
        write_json_atomic(self.state_path, self.state)

    def record(self, stage: str, **info) -> None:
        self.state["stages"][stage] = info
        self.save()

    def staged(self, stage: str, fingerprint: dict, work) -> None:
        """Run `work()` unless `<dir>/stage.done` holds the same fingerprint; time it; mark it done."""
        out = self.run / STAGE_DIRS[stage]
        marker = out / "stage.done"
        if marker.exists():
            done = json.loads(marker.read_text(encoding="utf-8"))
            if done.get("fingerprint") == fingerprint:
                log(f"[{stage}] complete in {out}, skipped")
                self.state["stages"].setdefault(stage, {"status": "done", "wall_s": done.get("wall_s")})
                self.state["stages"][stage]["skipped_at"] = now()
                self.save()
                return
            marker.unlink()
        out.mkdir(parents=True, exist_ok=True)
        t0, started = time.perf_counter(), now()
        work(out)
        wall = round(time.perf_counter() - t0, 2)
        write_json_atomic(marker, {"stage": stage, "fingerprint": fingerprint, "wall_s": wall,
                                   "started_at": started, "finished_at": now()})
        self.record(stage, status="done", wall_s=wall, started_at=started, finished_at=now())

    # ----- stages ------------------------------------------------------------------------------
    def stage_train(self):
        """Stage 1: a finished training run (trained here, resumed, or given with --train-run)."""
        from scripts.generate import TrainRun

        if self.cfg.train_run:
            log(f"[train] using the finished run {self.cfg.train_run}")
            run = TrainRun.open(self.cfg.train_run)
            self.record("train", status="taken", path=str(run.path), wall_s=None)
            return run
        train_dir = self.run / "train"
        if (train_dir / "DONE").exists() and not self.force:
            log(f"[train] complete in {train_dir} (DONE), skipped")
            self.state["stages"].setdefault("train", {"status": "done", "path": str(train_dir), "wall_s": None,
                                                      "note": "finished by an earlier invocation"})
            self.save()
            return TrainRun.open(train_dir)
        argv = ["--no-demo-eval", *self.cfg.train_args, "--out", str(train_dir)]
        if self.force or (train_dir.exists() and not any(train_dir.glob("checkpoints/step_*/state.json"))):
            argv.append("--force")  # nothing to resume from: a start that died before its first checkpoint
        elif train_dir.exists():
            argv.append("--resume")
        log(f"[train] scripts/train.py {' '.join(argv)}")
        from scripts import train

        t0, started = time.perf_counter(), now()
        train.main(argv)
        self.record("train", status="done", path=str(train_dir), wall_s=round(time.perf_counter() - t0, 2),
                    started_at=started, finished_at=now())
        return TrainRun.open(train_dir)

    def stage_generate(self, train_run) -> None:
        """Stage 2: base and fine-tuned responses on the held-out ids."""
        from scripts.generate import run_generation

        check_model_access(train_run.base_model)
        fingerprint = {"train_run": str(train_run.path.resolve()), "adapter_sha256": train_run.adapter_sha256,
                       "generation": self.state["config"]["generation"]}
        self.staged("generate", fingerprint, lambda out: run_generation(train_run, out, self.cfg.generation))

    def pairs(self) -> list[str]:
        gen = self.run / STAGE_DIRS["generate"]
        return [str(gen / "base.jsonl"), str(gen / "finetuned.jsonl")]

    def pairs_fingerprint(self) -> dict:
        return {Path(p).name: sha256_file(p) for p in self.pairs()}

    def stage_track_a(self) -> None:
        """Stage 3: lexical metrics and Table 1 (evalkit)."""
        from evalkit import cli as evalkit_cli

        def work(out: Path) -> None:
            argv = ["score", *sum((["--pairs", p] for p in self.pairs()), []), "--out", str(out),
                    *self.cfg.evalkit_args]
            call_cli(evalkit_cli.main, argv, "Track A (evalkit score)")
        fingerprint = {"pairs": self.pairs_fingerprint(), "evalkit_args": self.cfg.evalkit_args}
        self.staged("track_a", fingerprint, work)

    def stage_track_b(self) -> None:
        """Stage 4: the LLM judge and Table 2, when an endpoint is configured (see `judge_endpoint`)."""
        out = self.run / STAGE_DIRS["track_b"]
        base_url, model = judge_endpoint(self.cfg)
        if not base_url:
            if (out / "stage.done").exists():
                log(f"[track_b] no judge endpoint configured; keeping the earlier judgments in {out}")
                return
            log("[track_b] skipped: no judge endpoint configured; enable it with --judge-base-url URL (any "
                "OpenAI-compatible server: OpenAI, vLLM, llama.cpp, Ollama) or OPENAI_BASE_URL, or with "
                "--judge-standin (offline loopback stand-in, synthetic scores)")
            self.record("track_b", status="skipped", wall_s=None, reason="no judge endpoint configured")
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
        """Stage 5: report.md, report.json and figures (cheap, always rewritten)."""
        from scripts.report import write_report

        t0 = time.perf_counter()
        self.record("report", status="running", wall_s=None, started_at=now())
        path = write_report(self.run, self.state)
        self.record("report", status="done", wall_s=round(time.perf_counter() - t0, 2), finished_at=now())
        write_report(self.run, self.state)  # once more, so the manifest shows the report's own time
        return path


class _ErrorLineCatcher:
    """Stands in for stderr while a stage's CLI runs: passes everything through (progress bars
    included) except its `error: ...` line, which is kept so the pipeline reports it once, itself."""

    def __init__(self, stream):
        self.stream, self.errors, self._eat_newline = stream, [], False

    def write(self, text: str) -> int:
        if text.startswith("error: "):
            self.errors.append(text[len("error: "):].strip())
            self._eat_newline = not text.endswith("\n")
        elif not (self._eat_newline and text == "\n"):
            self.stream.write(text)
        else:
            self._eat_newline = False
        return len(text)

    def __getattr__(self, name):  # flush, isatty, fileno ... of the real stream
        return getattr(self.stream, name)


def call_cli(main, argv: list[str], what: str) -> None:
    """Run a stage's CLI entry point; a non-zero exit becomes one PipelineError line."""
    catcher = _ErrorLineCatcher(sys.stderr)
    with contextlib.redirect_stderr(catcher):
        rc = main(argv)
    if rc:
        detail = catcher.errors[-1] if catcher.errors else f"exit status {rc}"
        raise PipelineError(f"{what}: {detail}")


def train_base(cfg: ReproduceConfig) -> str | None:
    """The base model training will load: `--base` in train_args, else the preset's."""
    args = cfg.train_args
    for i, a in enumerate(args):
        if a == "--base" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--base="):
            return a.split("=", 1)[1]
    return cfg.base_model


def check_model_access(model: str | None) -> None:
    """Fail in one line, before hours of work, when a Hub model's files cannot be had here."""
    if not model or model == "demo" or Path(model).expanduser().exists() or "/" not in model:
        return
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(model, "config.json")
    except Exception as e:  # gated, offline, no network, no such repo: all end the same way
        reason = type(e).__name__
        raise PipelineError(f"{model}: the model's weights are not available on this machine ({reason}); "
                            + HF_ACCESS.format(repo=model)) from None


def judge_endpoint(cfg: ReproduceConfig) -> tuple[str | None, str | None]:
    """(base_url, model) from the flags / config, else `OPENAI_BASE_URL`; `STANDIN` for the stand-in."""
    if cfg.judge.standin:
        return STANDIN, cfg.judge.model or "standin"
    return cfg.judge.base_url or os.environ.get("OPENAI_BASE_URL") or None, cfg.judge.model


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reproduce.py", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", help="JSON config file (see scripts/pipeline_config.py)")
    src.add_argument("--preset", choices=PRESETS, help="built-in settings (default: demo)")
    p.add_argument("--run-dir", help="run folder (default: runs/reproduce-<preset>)")
    p.add_argument("--judge-base-url", help="OpenAI-compatible base URL for Track B (default: $OPENAI_BASE_URL)")
    p.add_argument("--judge-model", help="judge model name")
    p.add_argument("--judge-standin", action="store_true", help="Track B against the offline loopback stand-in")
    p.add_argument("--skip-train", action="store_true", help="take a finished run folder (needs --train-run)")
    p.add_argument("--train-run", help="a finished scripts/train.py run folder")
    p.add_argument("--force", action="store_true", help="redo every stage (the run folder's results are deleted)")
    return p


def resolve_config(args) -> ReproduceConfig:
    cfg = load_config(args.config) if args.config else preset(args.preset or "demo")
    if args.run_dir:
        cfg.run_dir = args.run_dir
    if args.skip_train and not (args.train_run or cfg.train_run):
        raise ConfigError("--skip-train needs --train-run DIR (a finished scripts/train.py run folder)")
    if args.train_run:
        cfg.train_run = str(Path(args.train_run).resolve())
    if args.judge_standin:
        cfg.judge.standin = True
    if args.judge_base_url:
        cfg.judge.base_url = args.judge_base_url
    if args.judge_model:
        cfg.judge.model = args.judge_model
    g = cfg.generation
    if g.max_new_tokens < 1 or g.batch_size < 1 or (g.limit is not None and g.limit < 1):
        raise ConfigError("generation: max_new_tokens, batch_size and limit must be >= 1")
    if g.dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"generation.dtype: {g.dtype!r} is not float32, bfloat16 or float16")
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from evalkit.errors import EvalkitError
    from judge.errors import JudgeError
    from lora.errors import LoraError
    from minillama.errors import MiniLlamaError
    from scripts.train_config import TrainError

    errors = (PipelineError, TrainError, MiniLlamaError, LoraError, EvalkitError, JudgeError, OSError)
    try:
        cfg = resolve_config(args)
        if not cfg.train_run and not (Path(cfg.run_dir) / "train" / "DONE").exists():
            check_model_access(train_base(cfg))  # before anything is written or printed
        pipe = Pipeline(cfg, force=args.force)
        pipe.state["command"] = " ".join(["scripts/reproduce.py", *(sys.argv[1:] if argv is None else argv)])
        pipe.prepare()
        log(f"reproduce: preset {cfg.preset}, run folder {pipe.run}")
        train_run = pipe.stage_train()
        pipe.stage_generate(train_run)
        pipe.stage_track_a()
        pipe.stage_track_b()
        report = pipe.stage_report()
        log(f"reproduce: report written to {report}")
        return 0
    except KeyboardInterrupt:
        print("error: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except SystemExit as e:  # a stage's CLI already printed its one line
        return e.code if isinstance(e.code, int) else 1
    except Exception as e:
        if not isinstance(e, errors):
            raise
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
