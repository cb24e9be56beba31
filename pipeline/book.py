"""How the reproduction's stages are recorded in the run folder: `pipeline.json` and `stage.done`.

`pipeline.json` keeps the resolved config, the commands that ran and every stage's status and wall
time; a folder stage (generate, track_a, grounding, track_b) writes `<dir>/stage.done` with a
fingerprint of its inputs when it finishes, and is skipped on a rerun while the fingerprint is the same.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from plumbing.durable import write_json_atomic
from plumbing.errors import CommandError
from plumbing.signals import Interrupted

from pipeline.config import ConfigError, PipelineError, ReproduceConfig, config_from_dict

STAGE_DIRS = {"generate": "generations", "track_a": "track_a", "grounding": "grounding", "track_b": "track_b"}
STAGE_NAMES = {"train": "training", "generate": "generation", "track_a": "Track A", "grounding": "grounding",
               "track_b": "Track B (rerun to resume)", "report": "report"}  # how a stage's error line begins


def log(message: str) -> None:
    """Print one progress line of the pipeline at once (flushed, so it interleaves with the stages' output)."""
    print(message, flush=True)


def now() -> str:
    """The current UTC time, ISO 8601 to the second (the timestamps of `pipeline.json`)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


HEARTBEAT_S = 5.0  # how often a running stage's wall time is saved (what a SIGKILL can lose at most)


class StageBook:
    """The run folder's bookkeeping: `pipeline.json` and the stages' `stage.done` markers.

    Every stage run is an attempt with its own wall time; a stage's `wall_s` is the sum over its
    attempts, so a stage killed and resumed reports the time it really took. While an attempt runs,
    its time is saved every `HEARTBEAT_S` seconds; an attempt found "running" by the next invocation
    was killed, and keeps the time of its last heartbeat.

    Args:
        cfg: the resolved configuration (its `run_dir` is the run folder).
        force: redo every stage: `prepare` deletes the earlier results.
        write: False on the non-main ranks of a torchrun launch (only rank 0 writes the book).
    """

    def __init__(self, cfg: ReproduceConfig, force: bool = False, write: bool = True):
        self.cfg, self.force, self.write = cfg, force, write
        self.run = Path(cfg.run_dir)
        self.state_path = self.run / "pipeline.json"
        self.state: dict = {"config": cfg.to_dict(), "stages": {}}
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Create the run folder; refuse to resume one made with other settings (unless --force)."""
        if not self.write:
            return
        if self.force:
            for d in list(STAGE_DIRS.values()) + ["figures"]:
                shutil.rmtree(self.run / d, ignore_errors=True)
            for f in ("report.md", "report.json", "report.html", "pipeline.json"):
                (self.run / f).unlink(missing_ok=True)
        if self.state_path.exists():
            try:
                old = json.loads(self.state_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise PipelineError(f"{self.state_path}: unreadable ({type(e).__name__}); pass --force to redo "
                                    "the run folder") from None
            keys = ("preset", "train", "train_run", "generation", "score", "score_options")
            try:  # a folder made before the typed config (train_args ...) is read as its file would be
                saved = config_from_dict(old.get("config", {}), str(self.state_path), hint=False).to_dict()
            except CommandError:  # a folder of settings this version cannot read: "made with other settings"
                saved = {}
            changed = [k for k in keys if saved.get(k) != self.state["config"][k]]
            if changed and self.has_results():
                raise ConfigError(f"{self.state_path}: this run folder was made with other settings "
                                  f"({', '.join(changed)}); pass --force to redo it or choose another --run-dir")
            # settings refused before any stage wrote a result (a missing dataset ...) may be corrected freely
            self.state["stages"] = {} if changed else old.get("stages", {})
            self.state["commands"] = old.get("commands", [])
            for entry in self.state["stages"].values():
                for attempt in entry.get("attempts", []):
                    if attempt.get("status") == "running":
                        attempt["status"] = "killed"
        self.run.mkdir(parents=True, exist_ok=True)
        self.state.setdefault("commands", []).append({"command": self.state.get("command"), "at": now()})
        self.save()

    def has_results(self) -> bool:
        """Whether any stage has written into the run folder (a training folder, a stage's folder, a report)."""
        folders = ["train", "figures", *STAGE_DIRS.values()]
        return any((self.run / d).is_dir() and any((self.run / d).iterdir()) for d in folders) or any(
            (self.run / f).exists() for f in ("report.md", "report.json", "report.html"))

    def save(self) -> None:
        """Write `pipeline.json` atomically (rank 0 only; the heartbeat thread shares the lock)."""
        if self.write:
            with self._lock:
                write_json_atomic(self.state_path, self.state)

    def note(self, stage: str, **info) -> None:
        """Merge `info` into `stage`'s entry (status, path, reason ...) and save."""
        self.state["stages"].setdefault(stage, {"attempts": [], "wall_s": 0.0}).update(info)
        self.save()

    @contextlib.contextmanager
    def timed(self, stage: str):
        """Run the block as one attempt of `stage`: its wall time is kept (heartbeats) even if killed."""
        entry = self.state["stages"].setdefault(stage, {"attempts": [], "wall_s": 0.0})
        attempt = {"started_at": now(), "wall_s": 0.0, "status": "running"}
        entry.setdefault("attempts", []).append(attempt)
        entry["status"] = "running"
        self.save()
        t0, stop = time.perf_counter(), threading.Event()

        def total() -> float:
            return round(sum(float(a.get("wall_s") or 0.0) for a in entry["attempts"]), 2)

        def beat():
            while not stop.wait(HEARTBEAT_S):
                attempt["wall_s"] = round(time.perf_counter() - t0, 2)
                entry["wall_s"] = total()
                self.save()
        heart = threading.Thread(target=beat, daemon=True)
        heart.start()
        try:
            yield attempt
            attempt["status"] = "done"
        except CommandError as e:  # the stage's own one line, said once by the pipeline with the stage named
            attempt["status"] = "failed"
            raise PipelineError(f"{STAGE_NAMES.get(stage, stage)}: {e}", exit_code=e.exit_code) from None
        except BaseException as e:
            attempt["status"] = "interrupted" if isinstance(e, (KeyboardInterrupt, SystemExit, Interrupted)) \
                else "failed"
            raise
        finally:
            stop.set()
            heart.join()
            attempt.update(wall_s=round(time.perf_counter() - t0, 2), finished_at=now())
            entry.update(wall_s=total(), status=attempt["status"])
            self.save()

    def staged(self, stage: str, fingerprint: dict, work) -> None:
        """Run `work(out)` unless `<dir>/stage.done` holds the same fingerprint; time it; mark it done.

        A stage folder without a matching marker holds leftovers of a killed or older attempt: `work`
        replaces them (the stage owns its folder), so a rerun never asks the user to delete anything.
        """
        out = self.run / STAGE_DIRS[stage]
        marker = out / "stage.done"
        if marker.exists():
            try:
                done = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                done = {}
            if done.get("fingerprint") == fingerprint:
                log(f"[{stage}] complete in {out}, skipped")
                self.state["stages"].setdefault(stage, {"status": "done", "wall_s": done.get("wall_s"),
                                                        "attempts": []})
                self.save()
                return
            if self.write:
                marker.unlink()
        if self.write:
            out.mkdir(parents=True, exist_ok=True)
        with self.timed(stage):
            work(out)
            if self.write:
                write_json_atomic(marker, {"stage": stage, "fingerprint": fingerprint, "finished_at": now()})
