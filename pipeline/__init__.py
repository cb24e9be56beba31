"""pipeline: the reproduction (the paper's Figure 2), the top floor that calls every other package.

    from pipeline import preset, reproduce
    report = reproduce(preset("demo"))

    config.py       ReproduceConfig: presets `demo` and `paper`, a JSON file on top
    run.py          reproduce(cfg): the lock, then the stages in order
    stages.py       the six stages, each a call of the library that does the work; the plan checked first
    book.py         pipeline.json and the stages' stage.done markers (resume, wall time per attempt)
    generation.py   stage 2: base and fine-tuned answers on the held-out pairs, batched and resumable
    databases.py    the disease database of the grounding stage
    report.py       report.json (every number), rendered by report_md.py and report_html.py
    manifest.py     what ran, on what, with which inputs
"""
from pipeline.config import ConfigError, PipelineError, ReproduceConfig, load_config, preset
from pipeline.run import reproduce

__all__ = ["ConfigError", "PipelineError", "ReproduceConfig", "load_config", "preset", "reproduce"]
