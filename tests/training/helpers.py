"""Shared by the training tests: fixture rows built from the OFFICIAL test set (independent of the synthesis code).

A row is a setting's system prompt + the query, the assistant turn is the ground-truth call; the rejected call swaps
the tool name for another member of the entry's functional group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from petool_lib.core import SETTINGS, render_prompt, write_jsonl
from petool_lib.harness.cases import decision_case
from petool_lib.training import Profile, StageConfig, load_training_profile, stage_config

BUDGET = 900  # tokens per row in these tests (short rows = fast tests)


def official_fixture_rows(entries: list[Any], n_entries: int = 12) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    # the entries with the shortest candidate lists, so that rows fit BUDGET once their history is trimmed
    entries = sorted(entries, key=lambda e: (len(render_prompt("preferred", [], e.candidates)), e.entry_id))
    entries = [e for e in entries if len(set(e.group_names) - {e.ground_truth["tool_name"]}) >= 1][:n_entries]
    sft, dpo = [], []
    for i, e in enumerate(entries):
        for s in SETTINGS:
            prompt = [{"role": "system", "content": e.prompts[s]}, {"role": "user", "content": e.query}]
            gt = json.dumps(e.ground_truth, ensure_ascii=False)
            sft.append({"prompt": prompt, "completion": [{"role": "assistant", "content": gt}],
                        "setting": s, "entry_id": e.entry_id, "case": decision_case(e, s)})
            others = sorted(set(e.group_names) - {e.ground_truth["tool_name"]})
            rejected = json.dumps(dict(e.ground_truth, tool_name=others[i % len(others)]), ensure_ascii=False)
            dpo.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": gt}],
                        "rejected": [{"role": "assistant", "content": rejected}], "setting": s, "entry_id": e.entry_id,
                        "case": decision_case(e, s)})
    return sft, dpo


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    write_jsonl(path, rows)


def tiny() -> Profile:
    return load_training_profile("tiny")


def tiny_stage(stage: str, **overrides: Any) -> StageConfig:
    """The tiny profile's stage config with ``overrides`` (what the tests used to pass as ``overrides=``)."""
    return stage_config(tiny(), stage, **overrides)
