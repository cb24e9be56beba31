"""How the reproduction's stages are run and recorded in the run folder (`scripts/reproduce.py`).

`pipeline.json` keeps the resolved config, the commands that ran and every stage's status and wall
time; a folder stage (generate, track_a, track_b) writes `<dir>/stage.done` with a fingerprint of
its inputs when it finishes, and is skipped on a rerun while the fingerprint is the same. A stage's
CLI (`python -m evalkit`, `python -m judge`) is called in-process; its `error: ...` line becomes one
`PipelineError`, which the pipeline prints once.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from scripts.manifest import write_json_atomic
from scripts.pipeline_config import ConfigError, PipelineError, ReproduceConfig

STAGE_DIRS = {"generate": "generations", "track_a": "track_a", "track_b": "track_b"}


def log(message: str) -> None:
    """Print one progress line of the pipeline at once (flushed, so it interleaves with the stages' output)."""
    print(message, flush=True)


def now() -> str:
    """The current UTC time, ISO 8601 to the second (the timestamps of `pipeline.json`)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StageBook:
    """The run folder's bookkeeping: `pipeline.json` and the stages' `stage.done` markers.

    Args:
        cfg: the resolved configuration (its `run_dir` is the run folder).
        force: redo every stage: `prepare` deletes the earlier results.
    """

    def __init__(self, cfg: ReproduceConfig, force: bool = False):
        self.cfg, self.force = cfg, force
        self.run = Path(cfg.run_dir)
        self.state_path = self.run / "pipeline.json"
        self.state: dict = {"config": cfg.to_dict(), "stages": {}}

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
        """Write `pipeline.json` atomically."""
        write_json_atomic(self.state_path, self.state)

    def record(self, stage: str, **info) -> None:
        """Set `stage`'s entry in `pipeline.json` to `info` (status, wall time, ...) and save."""
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
