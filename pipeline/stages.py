"""The six stages of the reproduction (the paper's Figure 2), each a call of the library that does the work.

    1 train      lora.finetune.train(TrainConfig)           -> train/ (or a finished --train-run)
    2 generate   pipeline.generation.run_generation(...)    -> generations/{base,finetuned}.jsonl
    3 track_a    evalkit.score_files(pairs, out, ...)       -> track_a/
    4 grounding  evalkit.ground_files(pairs, db, out, ...)  -> grounding/
    5 track_b    judge.judge_files(pairs, out, ...)         -> track_b/ (when a judge endpoint is configured)
    6 report     pipeline.report.write_report(...)          -> report.md, report.html, report.json, figures/

Every stage's arguments are resolved and checked by `Pipeline.plan` before the first stage runs, so a bad
training value or a missing API key is refused before hours of training. Failures arrive as the
shared error base (`plumbing.errors.CommandError`) and are reported once, by the pipeline.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from evalkit import RunOptions, ScoreConfig, ground_files, score_files
from evalkit.errors import EvalkitError
from judge.errors import JudgeError
from judge.llm.commands import JudgeOptions, check_key, judge_files
from judge.llm.config import DEFAULT_MODEL, JudgeConfig, key_from_env
from lora.finetune import TrainConfig, train
from lora.finetune.checkpoint import latest_intact
from lora.finetune.trained_run import TrainRun
from minillama.hub import check_access
from plumbing import threads
from plumbing.files import sha256_file
from plumbing.flags import check_fields

from pipeline.book import STAGE_DIRS, StageBook, log, now
from pipeline.config import ReproduceConfig
from pipeline.databases import resolve_db
from pipeline.generation import run_generation
from pipeline.report import write_report

STANDIN = "standin"  # judge endpoint placeholder: the loopback stand-in, started by the stage itself
LOCAL_COPY = 'pass a local copy with --base DIR (or a --config file\'s {"train": {"base": "DIR"}})'


@dataclass
class Plan:
    """Every stage's typed arguments, from the config (checked before the first stage runs)."""

    train: TrainConfig | None               # None with a finished --train-run
    score: tuple[ScoreConfig, RunOptions]   # Track A; grounding shares its RunOptions
    judge: tuple[JudgeConfig, JudgeOptions] | None  # None: Track B is skipped (no endpoint)
    judge_endpoint: tuple[str | None, str | None]   # (base_url or STANDIN, model)


class Pipeline(StageBook):
    """Runs the stages in order on one run folder (see the module docstring)."""

    def __init__(self, cfg: ReproduceConfig, force: bool, info):
        super().__init__(cfg, force=force, write=info.is_main)
        self.info = info
        self.plan = make_plan(cfg, self.run)

    def stage_train(self) -> TrainRun:
        """Stage 1: a finished training run (trained here, resumed, or given with --train-run)."""
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
        resumable = not self.force and latest_intact(train_dir, self.info.world_size)[0] is not None
        log(f"[train] lora.finetune.train into {train_dir}" + (" (resuming)" if resumable else ""))
        with self.timed("train"):
            self.note("train", path=str(train_dir), started_at=now())
            threads.configure_threads(self.plan.train.num_threads)  # the CPU thread policy, re-measured each step
            train(self.plan.train, resume=resumable, force=not resumable, on_step=lambda step: threads.tick())
        return TrainRun.open(train_dir)

    def stage_generate(self, train_run: TrainRun) -> None:
        """Stage 2: base and fine-tuned responses on the held-out ids (sharded over torchrun ranks)."""
        check_access(train_run.base_model, LOCAL_COPY)
        fingerprint = {"train_run": str(train_run.path.resolve()), "adapter_sha256": train_run.adapter_sha256,
                       "generation": self.state["config"]["generation"]}
        self.staged("generate", fingerprint, lambda out: run_generation(train_run, out, self.cfg.generation,
                                                                        self.info))

    def pairs(self) -> list[str]:
        gen = self.run / STAGE_DIRS["generate"]
        return [str(gen / "base.jsonl"), str(gen / "finetuned.jsonl")]

    def pairs_fingerprint(self) -> dict:
        return {Path(p).name: sha256_file(p) for p in self.pairs()}

    def stage_track_a(self) -> None:
        """Stage 3: lexical metrics and Table 1; leftovers of a killed attempt are replaced."""
        config, options = self.plan.score
        fingerprint = {"pairs": self.pairs_fingerprint(), "score": dataclasses.asdict(config),
                       "options": results_options(options)}
        self.staged("track_a", fingerprint, lambda out: score_files(self.pairs(), out, config, options))

    def stage_grounding(self) -> None:
        """Stage 4: clinical grounding and Table 3 against the disease database."""
        if not self.cfg.db:
            log("[grounding] skipped: no disease database configured (--db PATH)")
            self.note("grounding", status="skipped", reason="no disease database configured")
            return
        db = resolve_db(self.cfg.db, self.run)
        options = self.plan.score[1]
        fingerprint = {"pairs": self.pairs_fingerprint(), "db_sha256": sha256_file(db),
                       "options": results_options(options, figures=False)}
        self.staged("grounding", fingerprint, lambda out: ground_files(self.pairs(), db, out, options))

    def stage_track_b(self) -> None:
        """Stage 5: the LLM judge and Table 2, when an endpoint is configured (see `judge_endpoint`)."""
        out = self.run / STAGE_DIRS["track_b"]
        base_url, model = self.plan.judge_endpoint
        if self.plan.judge is None:
            if (out / "stage.done").exists():
                log(f"[track_b] no judge endpoint configured; keeping the earlier judgments in {out}")
                return
            log("[track_b] skipped: no judge endpoint configured; enable it with --judge-base-url URL (any "
                "OpenAI-compatible server: OpenAI, vLLM, llama.cpp, Ollama) or OPENAI_BASE_URL, or with "
                "--judge-standin (offline loopback stand-in, synthetic scores)")
            self.note("track_b", status="skipped", reason="no judge endpoint configured")
            return
        config, options = self.plan.judge

        def work(out: Path) -> None:
            judged, stop = config, None
            if base_url == STANDIN:  # started only when the stage runs, stopped when it ends
                from judge.standin import start_standin

                url, stop = start_standin(port=0)
                judged = dataclasses.replace(config, base_url=url)
                log(f"[track_b] judge: loopback stand-in at {url} (synthetic scores: checks the plumbing, "
                    "not the models)")
            try:
                judge_files(self.pairs(), out, judged, options)
            finally:
                if stop is not None:
                    stop()
        settings = self.state["config"]["judge"]
        fingerprint = {"pairs": self.pairs_fingerprint(), "base_url": base_url, "model": model,
                       "config": settings["config"], "options": settings["options"]}
        self.staged("track_b", fingerprint, work)

    def stage_report(self) -> Path:
        """Stage 6: report.md, report.html, report.json and figures (cheap, always rewritten)."""
        with self.timed("report"):
            path = write_report(self.run, self.state)
        write_report(self.run, self.state)  # once more, so the manifest shows the report's own time
        return path


def make_plan(cfg: ReproduceConfig, run: Path) -> Plan:
    """Each stage's typed arguments from the config, checked; every refusal is one line, now."""
    training = None
    if not cfg.train_run:
        training = dataclasses.replace(cfg.train, out=str(run / "train"))
        training.validate()
    check_fields(cfg.score, EvalkitError)
    check_fields(cfg.score_options, EvalkitError)
    score = (cfg.score, dataclasses.replace(cfg.score_options, force=True))  # a stage owns its folder
    base_url, model = judge_endpoint(cfg)
    judging = None
    if base_url:
        config = dataclasses.replace(cfg.judge.config, model=model or os.environ.get("JUDGE_MODEL") or DEFAULT_MODEL,
                                     base_url="http://127.0.0.1:1/v1" if base_url == STANDIN else base_url,
                                     api_key=key_from_env())
        check_fields(config, JudgeError)
        cfg.judge.options.check()
        if base_url != STANDIN:
            check_key(config)  # a remote judge without OPENAI_API_KEY is refused before training starts
        judging = (config, cfg.judge.options)
    return Plan(training, score, judging, (base_url, model))


def results_options(options: RunOptions, figures: bool = True) -> dict:
    """The options that change a stage's results (its fingerprint): not `force` nor `progress`."""
    names = ("keep_truncated", "strict_ids", "seed", "bootstrap", "permutations") + (("figures",) if figures else ())
    return {name: getattr(options, name) for name in names}


def train_base(cfg: ReproduceConfig) -> str | None:
    """The base model training will load (None: the demo's own tiny Llama)."""
    return cfg.base_model


def judge_endpoint(cfg: ReproduceConfig) -> tuple[str | None, str | None]:
    """(base_url, model) from the flags / config, else `OPENAI_BASE_URL`; `STANDIN` for the stand-in."""
    if cfg.judge.standin:
        return STANDIN, cfg.judge.model or "standin"
    return cfg.judge.base_url or os.environ.get("OPENAI_BASE_URL") or None, cfg.judge.model
