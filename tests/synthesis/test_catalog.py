"""Catalog validation: the sample catalog, malformed tool files skipped and counted, a missing directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from petool_lib.core.data import provider_of
from petool_lib.synthesis.catalog import load_sample, load_toolbench_dir, sample_dir
from petool_lib.synthesis.pipeline import synthesize

from .helpers import synth_cfg


def test_sample_catalog_size_and_groups(sample_run: tuple[Path, dict]) -> None:
    cat = load_sample()
    assert len(cat.apis) >= 40 and not cat.skipped
    assert len(cat.categories()) >= 3
    _, m = sample_run
    assert m["grouping"]["groups"] >= 10
    groups = json.loads((sample_run[0] / "groups.json").read_text())["groups"]
    for g in groups:  # one API per provider, 2..6 members, one category
        provs = [provider_of(n) for n in g["members"]]
        assert len(set(provs)) == len(provs) and 2 <= len(provs) <= 6
        assert len({n.split(">.<")[0] for n in g["members"]}) == 1


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")


def test_malformed_tools_are_skipped_and_counted(tmp_path: Path, synth_cache: Path) -> None:
    root = tmp_path / "tools"
    shutil.copytree(sample_dir(), root)
    good_api = {"name": "ping", "description": "Ping the service.", "required_parameters": [], "optional_parameters": []}
    _write(root / "Misc" / "broken.json", "{not json")
    _write(root / "Misc" / "no_name.json", json.dumps({"tool_description": "x", "api_list": [good_api]}))
    _write(root / "Misc" / "no_apis.json", json.dumps({"tool_name": "Empty", "api_list": []}))
    _write(root / "Misc" / "list.json", json.dumps([1, 2]))
    _write(root / "Misc" / "dups.json", json.dumps({"tool_name": "Dups", "api_list": [
        good_api, good_api, {"description": "no name"}, {"name": "nodesc"},
        {"name": "badparams", "description": "d", "required_parameters": "city"},
        {"name": "badparam", "description": "d", "required_parameters": [{"type": "STRING"}]}]}))
    dup_tool = json.loads((root / "Weather" / "meteopro_api.json").read_text())
    _write(root / "Weather" / "meteopro_copy.json", json.dumps(dup_tool))
    cat = load_toolbench_dir(root)
    assert cat.skip_counts() == {
        "api_bad_parameters": 2, "api_missing_field:description": 1, "api_missing_field:name": 1,
        "duplicate_api": 1, "duplicate_tool": 1, "empty_api_list": 1, "invalid_json": 1,
        "missing_field:tool_name": 1, "not_an_object": 1,
    }
    assert "<Misc>.<Dups>.<ping>" in cat.by_name  # the valid API of a partly broken tool is kept
    m = synthesize(synth_cfg(tmp_path / "out", synth_cache, tools=str(root), train=4, test=2))
    assert m["skipped_inputs"]["counts"] == cat.skip_counts()
    assert sum(m["skipped_inputs"]["counts"].values()) == len(m["skipped_inputs"]["items"]) == 10


def test_missing_tool_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tool directory not found"):
        load_toolbench_dir(tmp_path / "nope")
