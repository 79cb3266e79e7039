"""The holdout against the official test set, and the leakage report measured on the files written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from petool_lib.core.prompts import parse_prompt
from petool_lib.synthesis.holdout import leakage_table
from petool_lib.synthesis.instructions import normalize_text
from petool_lib.synthesis.pipeline import synthesize

from .helpers import synth_cfg


@pytest.mark.parametrize("holdout", ["strict", "shared-pool"])
def test_holdout_against_the_official_test_set(official, official_path: str, tmp_path: Path, synth_cache: Path,
                                               holdout: str) -> None:
    cfg = synth_cfg(tmp_path / holdout, synth_cache, tools="official", test_set=official_path, train=60, test=10,
                    holdout=holdout, embedding="tfidf")
    m = synthesize(cfg)
    lk = m["leakage"]
    assert lk["checked"] and m["inputs"]["catalog"]["categories"] == 45
    queries = {normalize_text(e.query) for e in official}
    gt = {e.ground_truth["tool_name"] for e in official}
    train = [json.loads(x) for x in (tmp_path / holdout / "sft.jsonl").read_text().splitlines()]
    in_train = sum(normalize_text(r["prompt"][1]["content"]) in queries for r in train)
    hist = [h.instruction for r in train for h in parse_prompt(r["prompt"][0]["content"]).history]
    hist_in = sum(normalize_text(h) in queries for h in hist)
    assert lk["train_queries_in_official_test"] * 3 == in_train  # the report measures what was written
    assert lk["train_history_instructions_in_official_test"] >= 0
    if holdout == "strict":
        assert in_train == 0 and hist_in == 0
        assert lk["train_target_groups_with_official_gt_api"] == 0 and lk["official_gt_apis_as_train_targets"] == []
        assert not any(json.loads(r["completion"][0]["content"])["tool_name"] in gt for r in train)
        assert lk["official_group_apis_seen_anywhere_in_train"] == 0
    else:
        targets = {json.loads(r["completion"][0]["content"])["tool_name"] for r in train}
        assert lk["official_gt_apis_as_train_targets"] == sorted(targets & gt)
    table = leakage_table(lk)
    assert table["official_gt_apis_as_train_targets"] == len(lk["official_gt_apis_as_train_targets"])
    assert {k: v for k, v in table.items() if k != "official_gt_apis_as_train_targets"} == {
        k: v for k, v in lk.items() if k != "official_gt_apis_as_train_targets"}


def test_holdout_skipped_with_reason_without_official(tmp_path: Path, synth_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("PETOOLBENCH_DIR", str(tmp_path / "nowhere"))
    m = synthesize(synth_cfg(tmp_path / "o", synth_cache, train=3, test=2))
    assert m["leakage"]["checked"] is False and "not found" in m["leakage"]["reason"]
    assert m["inputs"]["official_test_set"]["found"] is False
    assert leakage_table(m["leakage"])["official_gt_apis_as_train_targets"] == 0
