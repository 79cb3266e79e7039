"""Tiny test sets for the hostile-input tests, built in a temp folder (never the official file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from petool_lib.core.data import SETTINGS
from petool_lib.core.io import write_jsonl
from petool_lib.core.prompts import render_prompt

GT = "<Weather>.<SkyCast>.<forecast>"
SAME = "<Weather>.<MeteoPro>.<forecast>"
OTHER = "<Travel>.<TripAtlas>.<search>"
CALL = {"tool_name": GT, "parameters": {"city": "Paris"}}


def _cand(name: str) -> dict[str, Any]:
    return {"tool_name": name, "tool_description": f"{name} API", "optional_parameters": [],
            "required_parameters": [{"name": "city", "type": "STRING", "description": "city", "default": ""}]}


def _api(name: str) -> dict[str, str]:
    cat, tool, api = name[1:-1].split(">.<")
    return {"category_name": cat, "tool_name": tool, "api_name": api}


def entry_dict(entry_id: int, candidates: bool = True) -> dict[str, Any]:
    """One entry in the official combined format (three prompts, candidates, ground truth)."""
    cands = [_cand(GT), _cand(SAME), _cand(OTHER)] if candidates else []
    history = [{"instruction": "weather in Rome", "tool_call": {"tool_name": GT, "parameters": {"city": "Rome"}}}]
    rated = [{**h, "rating": 1} for h in history]
    prompts = {f"instruction_{s}": render_prompt(s, rated if s == "ratings" else history, cands) for s in SETTINGS}
    return {
        "entry_id": entry_id, "query": "weather in 'Paris'", **prompts, "apis_candidate": json.dumps(cands),
        "api_call_ground_truth": CALL, "api_ground_truth": _api(GT), "func": "1",
        "apis_same_func": [_api(GT), _api(SAME)], "tool_comb": [], "num_tools_combined": "3", "history_length": 1,
    }


def write_test_set(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


def small_test_set(tmp_path: Path, n: int = 3) -> Path:
    return write_test_set(tmp_path / "test.json", [entry_dict(i) for i in range(1, n + 1)])


def perfect_rows(ids: list[int], settings: tuple[str, ...] = SETTINGS) -> list[dict[str, Any]]:
    return [{"entry_id": i, "setting": s, "response": json.dumps(CALL)} for s in settings for i in ids]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    return write_jsonl(path, rows)
