"""The minimal-pair check (benchmarks.minimal_pairs): pairing, counting, and the same prompts as an SFT run's."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from petool_lib.benchmarks.minimal_pairs import main, pair_indices, pair_report, prepare_pairs
from petool_lib.core import write_jsonl

from ..training.helpers import tiny
from ..training.test_contrast import _rows as contrast_fixture_rows


def _turn(name: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": name}]


def _pair(entry_id: int, a: str, b: str) -> list[dict[str, Any]]:
    row = {"prompt": [], "chosen": _turn(a), "rejected": _turn(b), "entry_id": entry_id, "setting": "ratings"}
    return [row, {**row, "chosen": _turn(b), "rejected": _turn(a)}]


def test_pairs_and_counts() -> None:
    rows = _pair(1, "A", "B") + [{"prompt": [], "chosen": _turn("C"), "rejected": _turn("D"), "entry_id": 2}] \
        + _pair(3, "E", "F")
    assert pair_indices(rows) == [(0, 1), (3, 4)]
    ignores = pair_report(rows, [1.0, -1.0, 0.5, 2.0, -2.0])  # the same score on both prompts: one right per pair
    assert (ignores.pairs, ignores.positive, ignores.both_right) == (2, 3, 0)
    assert ignores.flip_sensitivity == 0.0 and ignores.sensitivity_by_setting == {"ratings": 0.0}
    reads = pair_report(rows, [1.0, 0.3, -0.5, 2.0, 0.1])
    assert (reads.positive, reads.both_right) == (4, 2)
    assert math.isclose(reads.mean_margin, 0.58)
    assert math.isclose(reads.flip_sensitivity, (1.3 + 2.1) / 2)  # the unpaired row (entry 2) counts in no pair
    moved = pair_report(rows, [2.0, -1.0, 0.0, 1.0, -3.0])  # both pairs: one right, but the flip moves the margin
    assert moved.both_right == 0 and math.isclose(moved.flip_sensitivity, (1.0 - 2.0) / 2)
    assert pair_indices(_pair(1, "A", "B")[:1] + _pair(2, "A", "B")[1:]) == []  # another entry: not a pair
    with pytest.raises(ValueError, match="3 rows but 2 margins"):
        pair_report(rows[:3], [1.0, 2.0])


def test_the_pairs_are_the_prompts_an_sft_run_with_contrast_rows_trains_on(tmp_path: Path) -> None:
    from petool_lib.core.models import resolve_model
    from petool_lib.training import load_tokenizer, prepare_rows, rejected_turns, stage_config

    tokenizer = load_tokenizer(resolve_model("tiny"))
    sft, dpo = contrast_fixture_rows(12)
    write_jsonl(tmp_path / "dpo.jsonl", dpo)
    rows, stats = prepare_pairs(tiny(), "sft", tmp_path, tokenizer, 6, settings=["ratings", "chronological"])
    cfg = stage_config(tiny(), "sft", max_examples=6, contrast_rows=1.0, settings=("ratings", "chronological"))
    trained, _ = prepare_rows(sft, "sft", tokenizer, cfg, 0, rejected=rejected_turns(dpo))
    assert [r["prompt"] for r in rows] == [r["prompt"] for r in trained]
    assert [r["chosen"] for r in rows] == [r["completion"] for r in trained]
    assert len(pair_indices(rows)) == stats.contrast_rows == 6 and len(rows) == 12
    settings = [r["setting"] for r in rows]  # read back from each prepared prompt's task text
    assert {s: settings.count(s) for s in settings} == stats.by_setting == {"ratings": 6, "chronological": 6}

    out = tmp_path / "pairs.json"
    assert main(["--profile", "tiny", "--model", "tiny", "--data", str(tmp_path), "--n", "4", "--settings",
                 "ratings", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert (got["rows"], got["pairs"], got["rows_by_setting"]) == (8, 4, {"ratings": 8})
    assert len(got["margins"]) == 8 and all(math.isfinite(m) for m in got["margins"])
    assert got["positive"] == sum(m > 0 for m in got["margins"]) and 0 <= got["both_right"] <= 4
    assert set(got["sensitivity_by_setting"]) == {"ratings"}  # read from the prepared prompts' task text
    assert math.isclose(got["flip_sensitivity"], sum(got["margins"]) / 4, abs_tol=1e-6)  # 4 pairs, nothing unpaired
