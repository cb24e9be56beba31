"""The fine-tuning library behind `scripts/train.py`, one concept per module.

    config.py       TrainConfig (every knob, with its help and reason) and the presets
    flags.py        the command line built from TrainConfig
    records.py      dataset files: download, read, validate
    data.py         tokenisation with loss masks, the held-out split, data order, micro-batches
    loss.py         Eq. 3 (SummedNLL)
    schedule.py     the learning-rate schedule
    checkpoint.py   resumable, verified checkpoints
    run_dir.py      the run folder: lock, refusal to overwrite, metrics log
    files.py        durable writes, checksums, folder locks
    distributed.py  torchrun: DDP, FSDP2, reductions, per-rank RNG
    signals.py      SIGINT / SIGTERM: finish the step, checkpoint, exit 130 / 143
    run_folder.py   a finished run folder, read by generation and chat
    demo_data.py, demo_model.py, plots.py   the CPU demo's data and base model; the loss curve
"""
