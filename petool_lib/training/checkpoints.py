"""A stage on disk: resuming from the checkpoints of an interrupted run, and the files a finished stage writes.

While training, checkpoints go to ``<out>/checkpoints`` next to ``run_fingerprint.json`` (the resolved run config
plus a hash of the prepared rows): a rerun resumes from the last checkpoint only when the fingerprint is the same,
and refuses otherwise (:class:`ResumeError`). A checkpoint is complete when its ``trainer_state.json`` (written
last by the Trainer) reads as JSON and its adapter weights are there; a rerun skips and removes incomplete ones (a
run killed while saving), resumes from the newest complete one, or starts over when there is none, and says so in
one line on stderr. A finished stage writes into ``<out>``: the adapter (the trained one only), the tokenizer,
``train_config.json``, ``log_history.json``, ``train_stats.json`` and ``loss.png``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from ..core.io import read_json, write_json
from .config import POLICY_ADAPTER

CHECKPOINTS = "checkpoints"  # sub-folder of a stage's output directory
FINGERPRINT_FILE = "run_fingerprint.json"
TRAINER_STATE = "trainer_state.json"  # the Trainer writes it last into a checkpoint
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "pytorch_model.bin",
                "model.safetensors.index.json")
_CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")


class ResumeError(RuntimeError):
    """Checkpoints that must not be resumed (another run's): the message says to pass ``--no-resume``."""


def to_jsonable(obj: Any) -> Any:
    """``obj`` with whatever JSON cannot hold turned into strings (dict keys, paths, enums, ...)."""
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        if isinstance(obj, dict):
            return {str(k): to_jsonable(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [to_jsonable(v) for v in obj]
        return str(obj)


def run_fingerprint(run_cfg: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What must not change for checkpoints to be resumed: the run config and (a hash of) the prepared rows."""
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return {**run_cfg, "rows_sha256": digest}


def checkpoint_dirs(ckpt_dir: Path) -> list[Path]:
    """The ``checkpoint-<step>`` folders in ``ckpt_dir``, newest (highest step) first."""
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir()
             if p.is_dir() and (m := _CHECKPOINT_DIR.fullmatch(p.name))] if ckpt_dir.is_dir() else []
    return [p for _, p in sorted(found, reverse=True)]


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be resumed; None when it is complete."""
    try:
        state = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"no {TRAINER_STATE}"
    except (OSError, ValueError):
        return f"unreadable {TRAINER_STATE}"
    if not isinstance(state, dict) or "global_step" not in state:
        return f"unreadable {TRAINER_STATE}"
    if not any((path / w).is_file() and (path / w).stat().st_size > 0 for w in WEIGHT_FILES):
        return "no adapter weights"
    return None


def last_complete_checkpoint(ckpt_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint (None when there is none) and the incomplete ones newer than it, with why."""
    skipped = []
    for path in checkpoint_dirs(ckpt_dir):
        why = checkpoint_problem(path)
        if why is None:
            return path, skipped
        skipped.append((path, why))
    return None, skipped


def _skipped_text(skipped: list[tuple[Path, str]]) -> str:
    return ", ".join(f"{p.name} ({why})" for p, why in skipped)


def resume_point(ckpt_dir: Path, fingerprint: dict[str, Any], resume: bool) -> str | None:
    """Newest complete checkpoint to resume from (same config and data), else a clean checkpoint folder and None.

    Incomplete checkpoints newer than it are removed (the run writes them again), with one line on stderr."""
    meta = ckpt_dir / FINGERPRINT_FILE
    if resume and checkpoint_dirs(ckpt_dir):
        old = read_json(meta) if meta.is_file() else None
        if old != json.loads(json.dumps(to_jsonable(fingerprint))):  # compare as JSON (tuples become lists)
            raise ResumeError(
                f"{ckpt_dir} holds checkpoints of a different run (config or data changed); "
                "pass --no-resume (resume=False) to start over"
            )
        last, skipped = last_complete_checkpoint(ckpt_dir)
        for path, _ in skipped:
            shutil.rmtree(path, ignore_errors=True)
        if last is not None:
            if skipped:
                print(f"resume: skipped incomplete {_skipped_text(skipped)} in {ckpt_dir}; resuming from {last.name}",
                      file=sys.stderr, flush=True)
            return str(last)
        print(f"resume: no complete checkpoint in {ckpt_dir} (skipped incomplete {_skipped_text(skipped)}); "
              "starting over", file=sys.stderr, flush=True)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    ckpt_dir.mkdir(parents=True)
    write_json(meta, to_jsonable(fingerprint), indent=1, sort_keys=True)
    return None


def write_stage_outputs(out: Path, model: Any, tokenizer: Any, log_history: list[dict[str, Any]],
                        metrics: dict[str, Any], config: dict[str, Any], title: str) -> Path:
    """Save a finished stage into ``out``: the trained adapter (never DPO's frozen ``ref`` copy), the tokenizer,
    ``log_history.json``, ``train_stats.json`` (``metrics``), ``train_config.json`` (``config``) and ``loss.png``."""
    from .inspect import plot_log_history

    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), selected_adapters=[POLICY_ADAPTER])
    tokenizer.save_pretrained(str(out))
    write_json(out / "log_history.json", to_jsonable(log_history), indent=1)
    write_json(out / "train_stats.json", to_jsonable(metrics), indent=1, sort_keys=True)
    write_json(out / "train_config.json", to_jsonable(config), indent=1, sort_keys=True)
    plot_log_history(log_history, out / "loss.png", title)
    return out


def remove_checkpoints(out: Path) -> None:
    """Drop ``<out>/checkpoints`` (after a successful run)."""
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
