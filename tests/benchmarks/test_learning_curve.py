"""The learning curve on the tiny model and a tiny synthesized run: one SFT run (batch 1 x grad_accum 2, so two rows
per optimizer step) with a checkpoint at each size, every checkpoint and the base model scored on the same held-out
synthesized entries, JSON + PNG written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from petool_lib.benchmarks import learning_curve as lc  # noqa: E402
from petool_lib.core.data import load_test_set  # noqa: E402
from petool_lib.core.io import read_jsonl  # noqa: E402

from ..synthesis.helpers import synth_cfg  # noqa: E402

LIMIT = 1  # held-out entries per setting
SETTINGS_RUN = ["preferred", "chronological"]  # two of the three settings: a third fewer predictions


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthesized run (sample catalog): 4 training examples (12 SFT rows), 2 held-out test entries."""
    from petool_lib.synthesis.pipeline import synthesize

    out = tmp_path_factory.mktemp("lc-data")
    synthesize(synth_cfg(out, tmp_path_factory.mktemp("lc-synth-cache"), train=4, test=2))
    return out


@pytest.fixture(scope="module")
def profile_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/tiny.yaml with SFT at batch 1 x grad_accum 2 (2 rows per optimizer step)."""
    import yaml

    from petool_lib.core.data import REPO_ROOT

    doc = yaml.safe_load((REPO_ROOT / "configs" / "tiny.yaml").read_text())
    doc["training"]["sft"].update(batch_size=1, grad_accum=2, save_steps=1)  # save_steps=1: the callback overrides it
    path = tmp_path_factory.mktemp("lc-profile") / "tiny_lc.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def curve(synth_data: Path, profile_yaml: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The CLI (through ``python -m petool_lib``'s dispatcher), sizes 2 and 6 -> checkpoints at steps 1 and 3."""
    from petool_lib.cli import main

    out = tmp_path_factory.mktemp("lc-out")
    rc = main(["learning-curve", "--data", str(synth_data), "--out", str(out), "--profile", str(profile_yaml),
               "--model", "tiny", "--sizes", "6,2", "--limit", str(LIMIT), "--setting", "p,c", "--mode", "rank", "--quiet"])
    assert rc == 0
    return {"out": out, "result": json.loads((out / lc.RESULT_FILE).read_text()), "data": synth_data,
            "profile": profile_yaml}


def test_plan_steps_and_sizes() -> None:
    assert lc.parse_sizes("64, 0,32,32") == [32, 64]
    assert lc.plan_steps([8, 4], 4) == {4: 1, 8: 2}
    with pytest.raises(ValueError, match=r"6 not a multiple of the 4 rows per optimizer step"):
        lc.plan_steps([4, 6], 4)
    with pytest.raises(ValueError, match="non-negative"):
        lc.parse_sizes("-4")
    with pytest.raises(ValueError, match="no training size"):
        lc.parse_sizes("0")


def test_a_size_not_a_multiple_of_the_step_raises_before_training(synth_data: Path, profile_yaml: Path,
                                                                   tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"size\(s\) 3 not a multiple of the 2 rows per optimizer step"):
        lc.run_learning_curve(synth_data, synth_data / "test.json", tmp_path, profile=str(profile_yaml), model="tiny",
                              sizes=[2, 3], limit=LIMIT, progress=False)
    assert not (tmp_path / "sft").exists()


def test_checkpoints_at_the_steps_of_the_sizes(curve: dict[str, Any]) -> None:
    ckpts = curve["out"] / "sft" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-3"]  # none at step 2
    for step, rows in ((1, 2), (3, 6)):
        state = json.loads((ckpts / f"checkpoint-{step}" / "trainer_state.json").read_text())
        assert state["global_step"] == step
        assert state["epoch"] * 6 == pytest.approx(rows)  # exactly N of the 6 rows seen (one epoch = 6 rows)
        assert (ckpts / f"checkpoint-{step}" / "adapter_model.safetensors").is_file()
    cfg = curve["result"]["config"]
    assert cfg["backend"] == "hf" and cfg["settings"] == SETTINGS_RUN
    assert cfg["rows_per_step"] == 2 and cfg["sizes"] == [2, 6] and cfg["checkpoint_steps"] == {"2": 1, "6": 3}
    assert cfg["sft_stage_config"]["max_examples"] == 6 and cfg["sft_stage_config"]["epochs"] == 1.0
    assert cfg["train_context"] == cfg["sft_stage_config"]["context"]  # recorded beside the evaluation's context
    train = curve["result"]["training"]
    assert train["steps"] == 3 and train["examples"] == 6


def test_one_point_per_size_plus_the_base_model(curve: dict[str, Any]) -> None:
    res, out = curve["result"], curve["out"]
    assert res["complete"] is True
    points = res["points"]
    assert [(p["rows"], p["step"]) for p in points] == [(0, 0), (2, 1), (6, 3)]
    ckpts = out / "sft" / "checkpoints"
    assert points[0]["adapter"] is None
    assert [p["adapter"] for p in points[1:]] == [str(ckpts / "checkpoint-1"), str(ckpts / "checkpoint-3")]
    entries = load_test_set(curve["data"] / "test.json")
    assert len(res["entry_ids"]) == LIMIT and set(res["entry_ids"]) <= {e.entry_id for e in entries}
    for p in points:
        assert p["n"] == LIMIT * len(SETTINGS_RUN) == p["overall"]["n"]
        assert list(p["settings"]) == SETTINGS_RUN
        for s in p["settings"].values():
            assert s["n"] == LIMIT and 0 <= s["tool_acc"] <= 1 and 0 <= s["param_acc"] <= 1
            lo, hi = s["tool_ci95"]
            assert 0 <= lo <= s["tool_acc"] <= hi <= 1
        rows = read_jsonl(p["predictions"])
        assert {r["entry_id"] for r in rows} == set(res["entry_ids"])  # the same entries at every N
        assert {r["adapter"] for r in rows} == {p["adapter"]}  # predicted with that checkpoint's adapter
    for p in points[1:]:  # timing and throughput up to the step, cumulative
        assert p["train_seconds"] > 0 and p["input_tokens"] > 0 and p["tokens_per_s"] > 0
        assert p["loss"] is not None
    assert points[2]["input_tokens"] > points[1]["input_tokens"]
    assert points[2]["train_seconds"] >= points[1]["train_seconds"]
    assert (out / lc.FIGURE_FILE).read_bytes()[:4] == b"\x89PNG"


def test_a_rerun_resumes_training_and_predictions(curve: dict[str, Any]) -> None:
    """Same arguments again: the finished run resumes from its last checkpoint (no step redone), the predictions
    come from the caches, and the step times recorded by the first run are kept."""
    res = lc.run_learning_curve(curve["data"], curve["data"] / "test.json", curve["out"],
                                profile=str(curve["profile"]), model="tiny", sizes=[2, 6], settings=SETTINGS_RUN,
                                limit=LIMIT, progress=False)
    assert res["training"]["resumed_from"].endswith("checkpoint-3")
    first = curve["result"]["points"]
    for a, b in zip(first, res["points"]):
        assert (a["rows"], a["overall"], a["train_seconds"], a["input_tokens"]) == \
               (b["rows"], b["overall"], b["train_seconds"], b["input_tokens"])


def test_too_few_rows_for_the_largest_size_is_an_error(synth_data: Path, profile_yaml: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fewer than the 20 needed for 40 rows"):
        lc.run_learning_curve(synth_data, synth_data / "test.json", tmp_path, profile=str(profile_yaml), model="tiny",
                              sizes=[2, 40], limit=LIMIT, progress=False)
