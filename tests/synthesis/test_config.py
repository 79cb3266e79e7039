"""SynthConfig: what the manifest records, and validation."""

from __future__ import annotations

import pytest

from petool_lib.synthesis.config import NOT_RECORDED, SynthConfig
from petool_lib.synthesis.llm import LLMS


def test_recorded_parameters_leave_out_run_local_settings() -> None:
    rec = SynthConfig(out="/somewhere", cache_dir="/cache", progress=False, test_set="/x").recorded()
    assert not set(NOT_RECORDED) & set(rec)
    assert list(rec)[:3] == ["tools", "llm", "model"] and rec["llm"] == "offline"


@pytest.mark.parametrize("kw, message", [
    ({"llm": "nope"}, "unknown llm 'nope'"),
    ({"holdout": "loose"}, "unknown holdout 'loose'"),
    ({"train": -1}, "must be >= 0"),
    ({"test": -1}, "must be >= 0"),
])
def test_invalid_settings_are_named(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SynthConfig(**kw).validate()


def test_every_llm_is_valid() -> None:
    for name in LLMS:
        SynthConfig(llm=name).validate()
