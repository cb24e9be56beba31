"""plumbing: how every command of the project behaves as a process, the ground floor every package stands on.

It imports no other package of the project, and neither torch nor numpy at import time, so the model, LoRA,
the metrics, the judges and the pipeline can all use it without a cycle (docs/architecture.md).

    errors.py    exit codes, the error base `CommandError`, one-line messages
    signals.py   SIGINT / SIGTERM: `Interrupted`, `sigterm_raises`, `sigterm_cancels`, training's `StopFlag`,
                 `unblock_sigterm`, `raise_if_interrupted`
    command.py   `run_cli`: a command's body under the exit-code convention
    locks.py     `FileLock`, `exclusive_lock`, `folder_lock`: one run per folder, released when a process dies
    durable.py   atomic writes of a file, a set of files and a folder (fsynced temporary, rename, folder fsync)
    files.py     sha256 of a file, size-checked reads, whether an output folder can be written
    threads.py   how torch uses the CPU cores when other processes compete for them
"""
