"""The stage summary recorded in the run's metrics.json (what notebooks 03-04 used to build by hand)."""

from __future__ import annotations

import json
from pathlib import Path

from petool_lib.training import StageResult, record_stage, stage_summary


def _result(stage: str, out: Path) -> StageResult:
    metrics = {"stage": stage, "first_loss": 2.0, "final_loss": 1.0, "steps": 4, "examples": 8, "tokens_per_s": 99.0,
               "peak_rss_mb": 500.0, "peak_cuda_mb": None, "train_seconds": 3.0, "wall_seconds": 5.0,
               "resumed_from": None, "data": {"trimmed_rows": 2, "too_long_skipped": 1, "entry_ids": [1, 2]}}
    history = [{"step": 1, "loss": 2.0}]
    if stage == "dpo":
        metrics["step0_reference_check"] = {"max_abs_logp_diff": 0.0}
        history += [{"step": 2, "loss": 0.6, "rewards/margins": 0.4, "rewards/accuracies": 0.75}, {"train_loss": 1.0}]
    return StageResult(stage=stage, out_dir=out, metrics=metrics, log_history=history,
                       run_config={"model": "tiny", "backend": "hf", "profile": "tiny"})


def test_stage_summary_is_the_former_notebook_dict(tmp_path: Path) -> None:
    s = stage_summary(_result("sft", tmp_path / "sft"))
    assert s == {"model": "tiny", "backend": "hf", "profile": "tiny", "first_loss": 2.0, "final_loss": 1.0, "steps": 4,
                 "examples": 8, "tokens_per_s": 99.0, "peak_rss_mb": 500.0, "peak_cuda_mb": None,
                 "train_seconds": 3.0, "wall_seconds": 5.0, "resumed_from": None, "rows_trimmed": 2,
                 "rows_skipped_too_long": 1, "adapter": str(tmp_path / "sft")}
    d = stage_summary(_result("dpo", tmp_path / "dpo"))
    assert (d["final_reward_margin"], d["final_reward_accuracy"], d["step0_max_abs_logp_diff"]) == (0.4, 0.75, 0.0)


def test_record_stage_writes_the_metrics_section(tmp_path: Path) -> None:
    values = record_stage(tmp_path / "run", _result("dpo", tmp_path / "dpo"), train_pairs_margin_sft=0.1)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["dpo"] == values and values["train_pairs_margin_sft"] == 0.1 and values["model"] == "tiny"
