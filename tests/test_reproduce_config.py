"""The reproduce driver's small parts: config files, resumable generation files, one-line errors."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from evalkit import RunOptions
from lora.finetune.config import TrainConfig, preset_values
from lora.finetune.distributed import DistInfo
from medlora_scripts import reproduce
from pipeline import stages
from pipeline.book import StageBook
from pipeline.config import ConfigError, PipelineError, load_config, preset
from pipeline.generation import read_done
from minillama import MiniLlamaError
from minillama.hub import check_access

ONE = DistInfo(0, 1, 0, None)


def pipeline(cfg, force=False):
    return stages.Pipeline(cfg, force=force, info=ONE)


def finished_run(folder: Path) -> Path:
    """The files `TrainRun.open` checks, without any training."""
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "config.json").write_text("{}")
    (folder / "split.json").write_text(json.dumps({"val_ids": ["1"]}))
    (folder / "DONE").write_text("{}")
    return folder


def test_presets():
    demo, paper = preset("demo"), preset("paper")
    assert demo.base_model is None and demo.generation.device == "cpu" and demo.train.base == "demo"
    assert paper.train.learning_rate == 3e-5 and paper.base_model == "meta-llama/Llama-2-7b-chat-hf"
    assert not (demo.train.demo_eval or paper.train.demo_eval)  # the pipeline generates itself
    assert paper.generation.temperature == demo.generation.temperature == 0.0  # greedy for both models
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("other")


def test_config_file_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": "paper", "generation": {"max_new_tokens": 64, "limit": 20},
                                "train": {"max_steps": 20, "lora_target_modules": ["q_proj"]},
                                "score": {"stem": True}, "score_options": {"keep_truncated": True},
                                "judge": {"model": "gpt-4", "config": {"seed": 3}, "options": {"limit": 20}}}))
    cfg = load_config(path)
    assert cfg.preset == "paper" and cfg.train == TrainConfig(**{**preset_values("paper"), "demo_eval": False,
                                                                  "max_steps": 20, "lora_target_modules": ("q_proj",)})
    assert cfg.generation.max_new_tokens == 64 and cfg.generation.limit == 20
    assert cfg.generation.batch_size == preset("paper").generation.batch_size
    assert cfg.score.stem and cfg.score_options.keep_truncated and not preset("paper").score_options.keep_truncated
    assert cfg.judge.model == "gpt-4" and cfg.judge.options.limit == 20 and cfg.judge.config.seed == 3


def test_old_config_files_load_with_one_line_saying_the_new_way(tmp_path, capsys):
    """`train_args`, `evalkit_args` and `judge.args` (flag lists) are read by the commands' parsers; one stderr
    line gives the same settings as typed keys, and a file with those keys loads to the same config."""
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"preset": "paper", "train_args": ["--max-steps", "20", "--lora-target-modules", "q_proj"],
                               "evalkit_args": ["--keep-truncated", "--stem"],
                               "judge": {"model": "gpt-4", "args": ["--limit", "20", "--seed", "3"]}}))
    cfg = load_config(old)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"note: {old}: train_args, evalkit_args, judge.args is the old way")
    typed = json.loads(err[0].split("typed keys (docs/reproduce.md): ", 1)[1])
    assert typed == {"train": {"max_steps": 20, "lora_target_modules": ["q_proj"]}, "score": {"stem": True},
                     "score_options": {"keep_truncated": True},
                     "judge": {"model": "gpt-4", "config": {"seed": 3}, "options": {"limit": 20}}}
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"preset": "paper", **typed}))
    assert load_config(new) == cfg and capsys.readouterr().err == ""


@pytest.mark.parametrize("content, message", [
    ('{"generation": {"max_new_token": 3}}', "unknown key 'generation.max_new_token'"),
    ('{"generation": {"max_new_tokens": "3"}}', "generation.max_new_tokens must be a int, not str"),
    ('{"generation": {"temperature": true}}', "generation.temperature must be a float, not bool"),
    ('{"train_args": "--max-steps 3"}', "train_args must be a list of strings"),
    ('{"train": {"max_steps": "3"}}', "train.max_steps must be a int, not str"),
    ('{"train": {"out": "x"}}', "unknown key 'train.out' (set by the run folder's train/ (set run_dir))"),
    ('{"train": {"template": "gpt"}}', "train.template must be one of alpaca,"),
    ('{"score": {"rouge_beta": -1}}', "score.rouge_beta must be a finite number > 0, got -1"),
    ('{"score_options": {"bootstrap": 0}}', "score_options.bootstrap must be >= 1, got 0"),
    ('{"judge": {"config": {"model": "x"}}}', "unknown key 'judge.config.model' (set by judge.model)"),
    ('{"judge": {"options": {"limit": 0}}}', "judge.options.limit must be at least 1, got 0"),
    ('{"full": true}', "--full: the paper's full protocol on SmolLM2"),
    ('{"train_args": [], "train": {}}', "train_args and train: give one way, the typed keys"),
    ('{"judge": {"args": [], "options": {}}}', "judge.args and config or options: give one way"),
    ('{"judge": 3}', "judge must be an object"),
    ('{"preset": "fast"}', "preset: 'fast' is not one of demo, paper"),
    ('{"run_dir": null}', "run_dir cannot be null"),
    ('[1, 2]', "the top level must be a JSON object"),
    ('{"preset": "demo",}', "not valid JSON (line 1, column 19"),
])
def test_bad_config_file_is_one_line_naming_the_file(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)
    assert reproduce.main(["--config", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: ")
    assert not (tmp_path / "run").exists()


def test_flag_errors(tmp_path, capsys):
    assert reproduce.main(["--skip-train", "--run-dir", str(tmp_path / "r")]) == 2
    assert "--skip-train: needs --train-run" in capsys.readouterr().err
    assert reproduce.main(["--skip-train", "--train-run", str(tmp_path / "nothing"), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a finished training run (no DONE file)" in err[0]


def test_run_folder_made_with_other_settings_is_refused(tmp_path, capsys):
    cfg = preset("demo")
    cfg.run_dir = str(tmp_path / "run")
    pipeline(cfg).prepare()
    cfg.generation.max_new_tokens = 7
    pipeline(cfg).prepare()  # no stage has written anything yet: the settings may still change
    (tmp_path / "run" / "generations").mkdir()
    (tmp_path / "run" / "generations" / "base.jsonl").write_text("")
    cfg.generation.max_new_tokens = 8
    with pytest.raises(ConfigError, match="made with other settings \\(generation\\); pass --force"):
        pipeline(cfg).prepare()
    pipeline(cfg, force=True).prepare()  # --force starts over


def test_settings_refused_by_the_training_stage_can_be_corrected_in_the_same_folder(tmp_path, capsys):
    """A dataset that is not there is refused when training starts, after `pipeline.json` is written; the
    corrected command on the same folder then runs (it used to be refused as "made with other settings")."""
    run = tmp_path / "run"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"preset": "demo", "train": {"data": str(tmp_path / "nope.json")}}))
    assert reproduce.main(["--config", str(bad), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "nope.json" in err[-1] and not (run / "train").exists()
    cfg = preset("demo")
    cfg.run_dir = str(run)
    pipeline(cfg).prepare()
    assert json.loads((run / "pipeline.json").read_text())["config"]["train"]["data"] == cfg.train.data


def _rec(i: int) -> str:
    return json.dumps({"id": str(i), "model": "base", "prompt": "p", "reference": "r", "response": f"x{i}",
                       "finish_reason": "stop"})


def test_read_done_cuts_a_torn_last_line(tmp_path):
    path = tmp_path / "base.jsonl"
    path.write_text(_rec(1) + "\n" + _rec(2) + "\n" + _rec(3)[:25])
    assert list(read_done(path)) == ["1", "2"]
    assert path.read_text() == _rec(1) + "\n" + _rec(2) + "\n"  # appends now start on a fresh line
    path.write_text(_rec(1) + "\n" + _rec(2))  # complete JSON but no newline: the write did not finish
    assert list(read_done(path)) == ["1"]
    assert read_done(tmp_path / "absent.jsonl") == {}


def test_read_done_refuses_corruption_it_cannot_have_made(tmp_path):
    path = tmp_path / "base.jsonl"
    path.write_text(_rec(1) + "\n" + _rec(1) + "\n")
    with pytest.raises(PipelineError, match=r"base.jsonl:2: id 1 appears twice"):
        read_done(path)
    path.write_text("garbage\n" + _rec(1) + "\n")
    with pytest.raises(PipelineError, match=r"base.jsonl:1: not a generation record"):
        read_done(path)


def test_a_stage_error_is_one_pipeline_error_naming_the_stage(tmp_path):
    """A stage calls Python; its error (any package's, the shared base) becomes one PipelineError with the
    stage's name and the same exit status, and the attempt is recorded as failed."""
    from evalkit.errors import EvalkitError

    cfg = preset("demo")
    cfg.run_dir = str(tmp_path / "run")
    book = StageBook(cfg)
    book.prepare()
    with pytest.raises(PipelineError) as e:
        with book.timed("track_a"):
            raise EvalkitError("pairs.jsonl:3: missing field 'response'")
    assert str(e.value) == "Track A: pairs.jsonl:3: missing field 'response'" and e.value.exit_code == 2
    assert json.loads((tmp_path / "run" / "pipeline.json").read_text())["stages"]["track_a"]["status"] == "failed"


def test_every_stage_is_checked_before_the_first_runs(tmp_path, monkeypatch):
    """Bad flags for a later stage, or a remote judge without a key, are refused before training starts."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    cfg = preset("demo")
    cfg.run_dir = str(tmp_path / "run")
    cfg.judge.base_url, cfg.judge.model = "https://api.openai.com/v1", "gpt-4-0613"
    with pytest.raises(Exception, match="OPENAI_API_KEY is not set"):
        pipeline(cfg)
    cfg.judge.base_url = None
    cfg.score_options = RunOptions(bootstrap=0)
    with pytest.raises(Exception, match="--bootstrap: must be >= 1, got 0"):
        pipeline(cfg)
    cfg.score_options, cfg.train.learning_rate = RunOptions(), -1.0
    with pytest.raises(Exception, match="--learning-rate: must be > 0"):
        pipeline(cfg)
    assert not (tmp_path / "run").exists()


def test_train_base_and_access_check_for_local_models(tmp_path):
    cfg = preset("paper")
    assert stages.train_base(cfg) == "meta-llama/Llama-2-7b-chat-hf"
    cfg.train.base = str(tmp_path)
    assert stages.train_base(cfg) == str(tmp_path)
    check_access(str(tmp_path), "x")  # a local folder needs no access check
    check_access(None, "x")


def test_config_train_run_is_resolved_like_the_flag(tmp_path, monkeypatch):
    """A relative `train_run` in a config file names the same folder as `--train-run` (from the cwd), so the
    run folder made with one is not refused as "other settings" with the other."""
    monkeypatch.chdir(tmp_path)
    finished_run(tmp_path / "trained")
    (tmp_path / "c.json").write_text(json.dumps({"train_run": "trained"}))
    parser = reproduce.build_parser()
    from_file = reproduce.resolve_config(parser.parse_args(["--config", "c.json", "--run-dir", "run"]))
    from_flag = reproduce.resolve_config(parser.parse_args(["--train-run", "trained", "--run-dir", "run"]))
    assert from_file.train_run == from_flag.train_run == str(tmp_path / "trained")
    pipeline(from_flag).prepare()
    pipeline(from_file).prepare()  # same settings: not refused


@pytest.mark.parametrize("status, kind, expect", [
    (403, "GatedRepoError", "accept the licence on https://huggingface.co/org/model"),
    (404, "RepositoryNotFoundError", "no such model on huggingface.co"),
    (None, "ConnectionError", "cannot reach huggingface.co (Name or service not known)"),
])
def test_model_access_says_which_problem(monkeypatch, status, kind, expect):
    """Gated (the licence line), missing (check the name) and unreachable (the network) are told apart."""
    import huggingface_hub
    from huggingface_hub import constants, errors

    def probe(url, timeout=None, **kw):
        if status is None:
            raise ConnectionError("Name or service not known")
        httpx2 = pytest.importorskip("httpx2")
        response = httpx2.Response(status, request=httpx2.Request("HEAD", url))
        raise getattr(errors, kind)("refused", response=response)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **kw: None)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", probe)
    with pytest.raises(MiniLlamaError) as e:
        check_access("org/model", "pass a local copy")
    assert str(e.value).startswith("org/model: ") and expect in str(e.value)
    assert ("licence" in str(e.value)) == (kind == "GatedRepoError")


def test_grounding_databases(tmp_path, monkeypatch):
    """The paper preset's database is ChatDoctor's file (sha256 checked, cached: the embedded copy, or the public
    file with chatdoctor@download); the demo writes its own."""
    import shutil

    from conftest import shared_file
    from evalkit import load_disease_db
    from pipeline import databases
    from lora.finetune.demo_data import CONDITIONS
    from plumbing.files import sha256_file

    real = shared_file("disease-database.csv")
    assert sha256_file(real) == databases.DISEASE_DB_SHA256
    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    shutil.copyfile(real, tmp_path / "cache" / "disease-database.csv")  # as if downloaded before
    assert databases.resolve_db("chatdoctor", tmp_path) == tmp_path / "cache" / "disease-database.csv"
    (tmp_path / "cache" / "disease-database.csv").write_text("tampered")
    monkeypatch.setattr(databases, "DISEASE_DB_URL", "http://127.0.0.1:9/format_dataset.csv")
    with pytest.raises(Exception, match=r"download failed .* pass --db PATH"):
        databases.resolve_db("chatdoctor@download", tmp_path)
    assert (tmp_path / "cache" / "disease-database.csv").read_text() == "tampered"  # a failed download keeps it
    got = databases.resolve_db("chatdoctor", tmp_path)  # the embedded copy replaces the tampered file, offline
    assert got == tmp_path / "cache" / "disease-database.csv" and got.read_bytes() == real.read_bytes()
    monkeypatch.setattr(databases, "EMBEDDED_DB", tmp_path / "absent.csv.gz")  # an install without package data
    got.write_text("tampered")
    with pytest.raises(Exception, match=r"download failed .* pass --db PATH"):
        databases.resolve_db("chatdoctor", tmp_path)
    demo = load_disease_db(databases.resolve_db("demo", tmp_path))
    assert [c.name for c in demo.conditions] == [databases._bare(c[0]) for c in CONDITIONS]
    assert "flu" in [c.name for c in demo.conditions] and "urinary tract infection" in [c.name for c in demo.conditions]
    assert preset("demo").db == "demo" and preset("paper").db == "chatdoctor"


@pytest.mark.parametrize("name", ["paper", "smollm2"])
def test_config_file_train_args_extend_the_presets(tmp_path, name):
    """A config's train_args come after the preset's own flags (`--preset NAME` first); they never replace them,
    or `{"preset": "paper", "train_args": ["--max-steps", "20"]}` would train the demo."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": name, "train_args": ["--max-steps", "20"]}))
    cfg = load_config(path)
    assert cfg.train == dataclasses.replace(preset(name).train, max_steps=20)
    path.write_text(json.dumps({"preset": name, "train": {"max_steps": 20}}))
    assert load_config(path) == cfg
