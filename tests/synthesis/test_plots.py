"""The synthesis figures are written as PNG files (from a real run's outputs)."""

from __future__ import annotations

import json
from pathlib import Path

from petool_lib.core.data import load_test_set
from petool_lib.core.io import read_jsonl
from petool_lib.synthesis import plots


def test_every_figure_is_written(sample_run: tuple[Path, dict], tmp_path: Path) -> None:
    out, m = sample_run
    tools = read_jsonl(out / "tools.jsonl")
    groups = [{"members": g["members"]} for g in json.loads((out / "groups.json").read_text())["groups"]]
    entries = load_test_set(out / "test.json")
    paths = [
        plots.group_sizes(m["grouping"]["size_distribution"], tmp_path / "a" / "sizes.png", {"2": 3, "3": 1}),
        plots.category_coverage(tools, groups, tmp_path / "coverage.png"),
        plots.history_lengths({"synthesized test": entries}, tmp_path / "lengths.png"),
        plots.preference_consistency(read_jsonl(out / "users.jsonl"), tmp_path / "consistency.png"),
    ]
    for p in paths:
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
