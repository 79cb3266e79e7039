"""Fixtures shared by the training tests (package scope: the tiny SFT -> DPO run is trained once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .helpers import BUDGET, official_fixture_rows, tiny, tiny_stage, write_rows


@pytest.fixture(scope="package")
def data_dir(tmp_path_factory: pytest.TempPathFactory, official) -> Path:
    d = tmp_path_factory.mktemp("data")
    sft, dpo = official_fixture_rows(official)
    write_rows(d / "sft.jsonl", sft)
    write_rows(d / "dpo.jsonl", dpo)
    return d


@pytest.fixture(scope="package")
def tokenizer() -> Any:
    from petool_lib.core import resolve_model
    from petool_lib.training import load_tokenizer

    return load_tokenizer(resolve_model("tiny"))


@pytest.fixture(scope="package")
def pipeline(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny SFT → DPO run shared by several tests."""
    from petool_lib.training import train_dpo, train_sft

    out = tmp_path_factory.mktemp("models")
    sft = train_sft(data_dir, tiny_stage("sft", token_budget=BUDGET, max_examples=8), profile=tiny(), model="tiny",
                    out=out / "sft", backend="hf")
    dpo = train_dpo(data_dir, tiny_stage("dpo", token_budget=BUDGET, max_examples=6, epochs=2), adapter=out / "sft",
                    profile=tiny(), model="tiny", out=out / "dpo", backend="hf")
    return {"out": out, "sft": sft, "dpo": dpo}
