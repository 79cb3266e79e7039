"""The predictor contract: both predictors satisfy it, and ``predict`` needs nothing beyond it."""

from __future__ import annotations

import pytest

from petool_lib.core.data import SETTINGS
from petool_lib.inference.base import Predictor
from petool_lib.inference.openai_client import OpenAIPredictor
from petool_lib.inference.predictions import predict

from .stub import StubPredictor


def test_both_predictors_and_a_stub_satisfy_the_contract(tiny):
    endpoint = OpenAIPredictor("m", base_url="http://127.0.0.1:9/v1", api_key="k")
    for p in (tiny, endpoint, StubPredictor()):
        assert isinstance(p, Predictor), type(p).__name__
        assert set(p.modes) <= {"generate", "constrained", "rank"} and isinstance(p.sort_by_length, bool)
    assert tiny.modes == ("generate", "constrained", "rank") and tiny.sort_by_length
    assert endpoint.modes == ("generate",) and not endpoint.sort_by_length and endpoint.adapter is None
    assert endpoint.context_window() is None and endpoint.default_batch_size() == 16
    assert tiny.default_batch_size() == (8 if tiny.device.type == "cuda" else 1)
    assert tiny.default_batch_size("rank") == 32 and endpoint.default_batch_size("generate") == 16
    assert tiny.context_window() == 8192

    class NoRun:
        name, model_name, adapter, modes, sort_by_length = "x", "x", None, ("generate",), False

    assert not isinstance(NoRun(), Predictor)


def test_predict_uses_only_the_contract(small):
    stub = StubPredictor(batch_size=4)
    rows = predict(small, stub, "all", "constrained", max_prompt_tokens=99, progress=False)
    assert [(r["entry_id"], r["setting"]) for r in rows] == [(e.entry_id, s) for s in SETTINGS for e in small]
    assert all(r["backend"] == "stub" and r["model"] == "stub-model" and r["adapter"] is None for r in rows)
    assert all(r["mode"] == "constrained" and r["new_tokens"] == 3 and r["error"] is None for r in rows)
    assert stub.budgets == [99] * len(rows) and stub.contexts == ["evidence"] * len(rows)
    oldest = StubPredictor(batch_size=4)
    predict(small, oldest, ["preferred", "none"], "constrained", max_prompt_tokens=99, progress=False, context="oldest")
    assert oldest.contexts == ["oldest"] * 2 * len(small)
    assert {s for b in oldest.batches for _, s in b} == {"preferred", "none"}
    with pytest.raises(ValueError, match="unknown context mode"):
        predict(small, StubPredictor(), "all", "constrained", progress=False, context="newest")
    # not sorted by length: batches of default_batch_size() in canonical order
    assert [len(b) for b in stub.batches] == [4, 4, 4, 4, 2]
    assert [x for b in stub.batches for x in b] == [(r["entry_id"], r["setting"]) for r in rows]


def test_predict_refuses_a_mode_the_predictor_does_not_offer(small):
    with pytest.raises(ValueError, match="stub predictor supports only"):
        predict(small, StubPredictor(), "all", "rank", progress=False)
    with pytest.raises(ValueError, match="unknown mode"):
        predict(small, StubPredictor(), "all", "beam", progress=False)
