"""A stage on disk: resuming from the checkpoints of an interrupted run, and the files a finished stage writes.

While training, checkpoints go to ``<out>/checkpoints`` next to ``run_fingerprint.json`` (the resolved run config
plus a hash of the prepared rows): a rerun resumes from the last checkpoint only when the fingerprint is the same,
and refuses otherwise. A finished stage writes into ``<out>``: the adapter (the trained one only), the tokenizer,
``train_config.json``, ``log_history.json``, ``train_stats.json`` and ``loss.png``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from ..core.io import read_json, write_json
from .config import POLICY_ADAPTER

CHECKPOINTS = "checkpoints"  # sub-folder of a stage's output directory
FINGERPRINT_FILE = "run_fingerprint.json"


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


def resume_point(ckpt_dir: Path, fingerprint: dict[str, Any], resume: bool) -> str | None:
    """Last checkpoint to resume from (same config and data), else a clean checkpoint folder and None."""
    from transformers.trainer_utils import get_last_checkpoint

    meta = ckpt_dir / FINGERPRINT_FILE
    if resume and ckpt_dir.is_dir():
        last = get_last_checkpoint(str(ckpt_dir))
        if last:
            old = read_json(meta) if meta.is_file() else None
            if old != json.loads(json.dumps(to_jsonable(fingerprint))):  # compare as JSON (tuples become lists)
                raise RuntimeError(
                    f"{ckpt_dir} holds checkpoints of a different run (config or data changed); "
                    "pass --no-resume (resume=False) to start over"
                )
            return last
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
