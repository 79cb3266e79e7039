"""Completion log-probabilities, checked against a direct computation on the tiny model."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from petool_lib.training import preference_margins, sequence_logps  # noqa: E402

PROMPT = [{"role": "system", "content": "You call tools."}, {"role": "user", "content": "weather in Paris?"}]
GOOD = [{"role": "assistant", "content": '{"tool_name": "a", "parameters": {}}'}]
BAD = [{"role": "assistant", "content": '{"tool_name": "b", "parameters": {}}'}]


@pytest.fixture(scope="module")
def model_tok() -> tuple[Any, Any]:
    from petool_lib.core import load_model

    return load_model("tiny")


def test_sequence_logps_is_the_sum_over_completion_tokens(model_tok: tuple[Any, Any]) -> None:
    model, tok = model_tok
    prompt_text = tok.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    full_text = tok.apply_chat_template(PROMPT + GOOD, tokenize=False)
    p_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
    c_ids = tok(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p_ids + c_ids], device=model.device)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]
    direct = sum(float(logp[len(p_ids) + i - 1, t]) for i, t in enumerate(c_ids))
    assert sequence_logps(model, tok, PROMPT, GOOD) == pytest.approx(direct, abs=1e-4)


def test_preference_margins(model_tok: tuple[Any, Any]) -> None:
    model, tok = model_tok
    rows = [{"prompt": PROMPT, "chosen": GOOD, "rejected": BAD}, {"prompt": PROMPT, "chosen": GOOD, "rejected": GOOD}]
    m = preference_margins(model, tok, rows)
    want = sequence_logps(model, tok, PROMPT, GOOD) - sequence_logps(model, tok, PROMPT, BAD)
    assert m[0] == pytest.approx(want) and m[1] == 0.0
