"""LoRA fine-tuning, as a recipe: `train(cfg: TrainConfig) -> run folder` (what `scripts/train.py` runs).

    from lora.finetune import PRESETS, TrainConfig, preset_values, train
    run = train(TrainConfig(**{**PRESETS["demo"], "out": "runs/demo"}))
    run = train(TrainConfig(**preset_values("smollm2")))   # SmolLM2-135M on GenMedGPT-5k (the base resolved)

One concept per module:

    recipe.py       train(), fine_tune (setup, loop, finish), train_step (one optimiser step), evaluate, after_step
    guard.py        run_guard: the checks before anything is written, the folder's lock, signals, torchrun
    setup.py        the model with LoRA, the adapters, config.json, the finish
    config.py       TrainConfig (every knob, with its help and reason) and the presets
    flags.py        the command line built from TrainConfig
    records.py      dataset files: the embedded GenMedGPT-5k (datasets/), download, read, validate
    data.py         tokenisation with loss masks, the held-out split, data order, micro-batches
    loss.py         Eq. 3 (SummedNLL) and the validation loss
    schedule.py     the learning-rate schedule (warm-up, then cosine)
    checkpoint.py   resumable, verified checkpoints
    distributed.py  torchrun: DDP, FSDP2, reductions, per-rank RNG
    run_folder.py   the run folder a run writes: lock, refusal to overwrite, metrics log
    trained_run.py  a finished run folder, read by the generation stage
    chat.py         a run folder or an adapter in `python -m minillama generate` (the `minillama.sessions` entry)
    demo_data.py, demo_model.py, plots.py   the CPU demo's data and base model; the loss curve
"""
from lora.finetune.config import PRESETS, RunFailed, TrainConfig, TrainError, preset_values
from lora.finetune.recipe import train

__all__ = ["PRESETS", "RunFailed", "TrainConfig", "TrainError", "preset_values", "train"]
