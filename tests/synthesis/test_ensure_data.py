"""``ensure_data``: notebook 03 on a fresh runtime synthesizes notebook 02's outputs with 02's own call."""

from __future__ import annotations

from pathlib import Path

import pytest

from petool_lib.synthesis import DATA_FILES, SynthConfig, ensure_data
from petool_lib.synthesis import pipeline


def cfg(out: Path) -> SynthConfig:  # notebook 02's call with configs/tiny.yaml's parameters
    return SynthConfig(tools="sample", out=str(out), llm="offline", seed=0, train=8, test=6, holdout="strict",
                       test_set=None)


def test_synthesizes_when_absent_then_reuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    out = ensure_data(cfg(tmp_path / "data"), log=said.append)
    assert out == tmp_path / "data" and all((out / f).is_file() for f in DATA_FILES)
    assert "synthesizing" in said[0]
    monkeypatch.setattr(pipeline, "synthesize", lambda c: pytest.fail("synthesized again"))
    assert ensure_data(cfg(tmp_path / "data"), log=said.append) == out
    assert "notebook 02's outputs" in said[1]


def test_a_partial_directory_is_completed_with_the_same_config(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "sft.jsonl").write_text("")
    seen: list[SynthConfig] = []
    monkeypatch.setattr(pipeline, "synthesize", seen.append)
    said: list[str] = []
    ensure_data(cfg(tmp_path), log=said.append)
    assert seen == [cfg(tmp_path)] and "dpo.jsonl, test.json" in said[0]
