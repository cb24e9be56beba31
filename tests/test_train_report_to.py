"""`scripts/train.py --report-to tensorboard|wandb`: what the trackers hold, read back with their own readers, equals
metrics.jsonl (the run's record) and config.json; a missing package is one line naming the extra, nothing written."""
from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest

from _train_util import train_args
from lora.finetune import trackers

from medlora_scripts import train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _expected(run: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.jsonl as tracker series: {tag: [(step, value), ...]} (trackers.TAGS names the tags)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        for key, tag in trackers.TAGS[row["type"]].items():
            series.setdefault(tag, []).append((row["step"], row[key]))
    return series


def _tensorboard(run: Path):
    """TensorBoard's own reader on the run's event files: ({tag: [(step, value)]}, the accumulator)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc


def _assert_series_equal(got: dict, want: dict, float32: bool) -> None:
    """Same tags, steps and values (TensorBoard keeps float32 scalars: compared after the same rounding)."""
    import numpy as np

    assert got.keys() == want.keys() == {"train/loss", "train/learning_rate", "train/grad_norm",
                                         "train/tokens_per_s", "eval/loss"}
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        values = [float(np.float32(v)) if float32 else v for _, v in points]
        assert [v for _, v in got[tag]] == values, tag


def test_tensorboard_event_files_equal_metrics_jsonl_and_hold_the_config(tiny_train, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = train.run(train_args(tiny_train, tmp_path / "run", "--max-steps", "4", "--report-to", "tensorboard"))
    got, acc = _tensorboard(run)
    _assert_series_equal(got, _expected(run), float32=True)
    config = {k: v for k, v in json.loads((run / "config.json").read_text()).items() if k != "resolved"}
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(text.removeprefix("```json\n").removesuffix("\n```")) == config
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in data.session_start_info.hparams.items()}
    assert hparams == {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v  # numbers: double
                       for k, v in trackers.hyperparameters(config).items()}
    assert hparams["report_to"] == "tensorboard" and hparams["lora_target_modules"] == "q_proj,k_proj,v_proj,o_proj"


def test_a_resumed_run_purges_what_the_interrupted_one_logged_after_its_checkpoint(tiny_train, tmp_path):
    """A run that logged step 3 but lost its checkpoint (as a crash before it is written) resumes from step 2: the
    event files read back equal the final metrics.jsonl, with no point twice (TensorBoard's purge_step)."""
    import shutil

    pytest.importorskip("tensorboard")
    flags = ("--max-steps", "4", "--report-to", "tensorboard")
    stopped = train.run(train_args(tiny_train, tmp_path / "run", *flags, "--stop-after-steps", "3"))
    shutil.rmtree(stopped / "checkpoints" / "step_00000003")
    assert max(step for step, _ in _tensorboard(stopped)[0]["train/loss"]) == 3
    run = train.run(train_args(tiny_train, tmp_path / "run", *flags, "--resume"))
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    got, _ = _tensorboard(run)
    _assert_series_equal(got, _expected(run), float32=True)


def _wandb_records(run: Path):
    """The records of the run's offline `.wandb` file: W&B's LevelDB-style log (a 7-byte header ':W&B', 0xBEE1,
    version 0; 32 KiB blocks of chunks, each `<crc32, length, type>` with type 1 full, 2 first, 3 middle, 4 last)
    of `wandb_internal.proto` `Record`s (wandb's own classes parse them)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7]) == (b":W&B", 0xBEE1, 0)
    pos, block, chunks = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (length, kind) == (0, 0):  # block trailer / padding
            pos += left
            continue
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            yield wandb_internal_pb2.Record.FromString(chunks)
            chunks = b""


def test_wandb_offline_run_holds_the_metrics_and_the_config(tiny_train, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = train.run(train_args(tiny_train, tmp_path / "run", "--max-steps", "4", "--report-to", "wandb"))
    got: dict[str, list[tuple[int, float]]] = {}
    config = {}
    for record in _wandb_records(run):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            for tag, value in items.items():
                if not tag.startswith("_"):
                    got.setdefault(tag, []).append((items["_step"], value))
        elif kind == "run":
            config = {u.key: json.loads(u.value_json) for u in record.run.config.update if u.key != "_wandb"}
    _assert_series_equal(got, _expected(run), float32=False)
    assert config == {k: v for k, v in json.loads((run / "config.json").read_text()).items() if k != "resolved"}


@pytest.mark.parametrize("which", ["tensorboard", "wandb"])
def test_a_missing_tracker_package_is_one_line_naming_the_extra(tiny_train, tmp_path, monkeypatch, capsys, which):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == which else real(name, *a))
    out = tmp_path / "run"
    assert train.main(train_args(tiny_train, out, "--report-to", which)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --report-to {which}: the {which} package is not installed; "
                   f"pip install 'medlora[{which}]' (or pass --report-to none)"]
    assert not out.exists()


def test_an_unknown_tracker_is_one_line(tiny_train, tmp_path, capsys):
    assert train.main(train_args(tiny_train, tmp_path / "run", "--report-to", "mlflow")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--report-to" in err[0] and "mlflow" in err[0]
    assert not (tmp_path / "run").exists()
