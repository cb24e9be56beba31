"""The reproduction manifest: what ran, on what, with which inputs, and how long each stage took.

Enough to tell two runs apart and to check that a report belongs to a given checkpoint and dataset:
configuration, seeds, package versions, sha256 of the adapter / base weights / dataset / outputs,
hardware, and wall time per stage.
"""
from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from plumbing.files import sha256_file

PACKAGES = ("torch", "safetensors", "sentencepiece", "huggingface-hub", "numpy", "scipy", "httpx",
            "medlora")


def sha256_tree(folder: str | Path, patterns: tuple[str, ...] = ("*.safetensors", "*.json", "*.model")) -> dict:
    """{relative path: sha256} for the files of `folder` matching `patterns` (sorted, recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    files = sorted({p for pat in patterns for p in folder.rglob(pat) if p.is_file()})
    return {str(p.relative_to(folder)): sha256_file(p) for p in files}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when not installed), plus Python's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict:
    """CPU, memory and accelerator description of this machine."""
    info = {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or None, "cpu_count": os.cpu_count(),
            "memory_gb": _memory_gb(), "cuda": []}
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cuda_version"] = torch.version.cuda
    except ImportError:  # pragma: no cover - torch is a runtime dependency
        pass
    return info


def _memory_gb() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return round(pages * size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def build_manifest(config: dict, train_config: dict, stages: dict, checksums: dict,
                   seeds: dict, commands: list[dict] | None = None) -> dict:
    """Assemble the manifest dict (the report prints it and writes it into report.json).

    Args:
        config: the resolved reproduce config (`ReproduceConfig.to_dict()`).
        train_config: the training run's `config.json`.
        stages: {stage: {"wall_s", "status", ...}} as recorded by the pipeline.
        checksums: {name: sha256 or {file: sha256}}.
        seeds: {name: seed}.
        commands: every invocation that worked on this run folder, oldest first ({"command", "at"}).
    """
    return {
        "command": (commands or [{}])[-1].get("command"),
        "commands": commands or [],
        "config": config,
        "train_config": train_config,
        "seeds": seeds,
        "packages": package_versions(),
        "checksums": checksums,
        "hardware": hardware(),
        "stages": stages,
        "total_wall_s": round(sum(float(s.get("wall_s") or 0.0) for s in stages.values()), 2),
    }
