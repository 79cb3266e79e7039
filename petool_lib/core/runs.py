"""Run-directory conventions shared by the notebooks: ``outputs/<run>/{data,models,predictions,figures}``, metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import REPO_ROOT
from .io import read_json, write_json

SUBDIRS = ("data", "models", "predictions", "figures")


def run_path(run_dir: str | Path) -> Path:
    """Absolute run directory (relative paths are taken from the repository root) with its sub-folders."""
    p = Path(run_dir)
    if not p.is_absolute():
        p = REPO_ROOT / p
    for sub in SUBDIRS:
        (p / sub).mkdir(parents=True, exist_ok=True)
    return p


def figure_path(run_dir: str | Path, name: str) -> Path:
    """Where a PNG figure goes: ``<run>/figures/<name>.png``."""
    return run_path(run_dir) / "figures" / f"{name}.png"


def update_metrics(run_dir: str | Path, section: str, values: Any) -> Path:
    """Merge ``{section: values}`` into ``<run>/metrics.json`` (one section per stage, overwritten on rerun)."""
    path = run_path(run_dir) / "metrics.json"
    data = read_json(path) if path.is_file() else {}
    data[section] = values
    return write_json(path, data, indent=2, sort_keys=True)


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = run_path(run_dir) / "metrics.json"
    return read_json(path) if path.is_file() else {}
