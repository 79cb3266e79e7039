"""What a stage returns (:class:`StageResult`) and the summary of it that goes into the run's ``metrics.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the per-stage numbers shown in the notebooks and recorded in metrics.json (from StageResult.metrics)
SUMMARY_KEYS: tuple[str, ...] = ("first_loss", "final_loss", "steps", "examples", "tokens_per_s", "peak_rss_mb",
                                 "peak_cuda_mb", "train_seconds", "wall_seconds", "resumed_from")


@dataclass
class StageResult:
    """What a stage produced: the adapter directory and its metrics (also in ``train_stats.json``)."""

    stage: str  # "sft" | "dpo"
    out_dir: Path  # the adapter directory
    metrics: dict[str, Any]  # = train_stats.json: losses, steps, tokens/s, memory, row statistics ("data")
    log_history: list[dict[str, Any]]  # the trainer's logged steps (= log_history.json)
    run_config: dict[str, Any] = field(default_factory=dict)  # = train_config.json without the TRL arguments
    model: Any = field(default=None, repr=False)  # the trained PeftModel (DPO: still holds the frozen "ref" adapter)
    tokenizer: Any = field(default=None, repr=False)
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)  # the prepared training rows, in order


def stage_summary(res: StageResult) -> dict[str, Any]:
    """The stage's headline numbers: model / backend / profile, losses, steps, throughput, memory, rows trimmed and
    skipped, the adapter; for DPO also the last logged reward margin / accuracy and the step-0 reference check."""
    m, data = res.metrics, res.metrics.get("data", {})
    out: dict[str, Any] = {k: res.run_config.get(k) for k in ("model", "backend", "profile")}
    out.update({k: m.get(k) for k in SUMMARY_KEYS})
    out.update(rows_trimmed=data.get("trimmed_rows"), rows_skipped_too_long=data.get("too_long_skipped"),
               adapter=str(res.out_dir))
    if res.stage == "dpo":
        last = next((h for h in reversed(res.log_history) if "rewards/margins" in h), {})
        out.update(final_reward_margin=last.get("rewards/margins"), final_reward_accuracy=last.get("rewards/accuracies"),
                   step0_max_abs_logp_diff=m.get("step0_reference_check", {}).get("max_abs_logp_diff"))
    return out


def record_stage(run_dir: str | Path, res: StageResult, **extra: Any) -> dict[str, Any]:
    """Write :func:`stage_summary` (plus ``extra`` values) as the ``sft`` / ``dpo`` section of the run's
    ``metrics.json``; returns what was written. Under ``accelerate launch`` only the main process writes (the
    others return the same values)."""
    from ..core.runs import update_metrics
    from .distributed import is_main_process

    values = {**stage_summary(res), **extra}
    if is_main_process():
        update_metrics(run_dir, res.stage, values)
    return values
