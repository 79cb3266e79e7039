"""Notebook helpers: held-out sample rows, generations with their verdicts, the loss / reward plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from petool_lib.training import (  # noqa: E402
    compare_samples,
    count_tokens,
    free_memory,
    generate,
    plot_log_history,
    sample_rows,
)

from .helpers import tiny_stage  # noqa: E402


def test_sample_rows_fit_the_budget_and_are_seeded(tokenizer: Any, official) -> None:
    entries = official[:30]
    cfg = tiny_stage("sft", token_budget=1200)
    rows = sample_rows(entries, tokenizer, cfg, n=3, seed=0)
    assert len(rows) == 3 and rows == sample_rows(entries, tokenizer, cfg, n=3, seed=0)
    assert {r["setting"] for r in rows} <= {"preferred", "ratings", "chronological"}
    assert len({r["entry_id"] for r in rows}) == 3  # held-out official entries, each once
    assert all(count_tokens(tokenizer, r["prompt"] + r["completion"]) <= 1200 for r in rows)
    # a budget nothing fits: the shortest rows fill up, whole
    whole = sample_rows(entries, tokenizer, tiny_stage("sft", token_budget=10), n=2, seed=0)
    assert len(whole) == 2


def test_generate_and_compare_samples(official) -> None:
    from petool_lib.core import load_model

    entries = official[:6]
    model, tok = load_model("tiny")
    rows = sample_rows(entries, tok, tiny_stage("sft"), n=2, seed=1)
    out = generate(model, tok, rows, max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    truth = [r["completion"][0]["content"] for r in rows]
    table = compare_samples(entries, rows, before=out, oracle=truth)
    assert [t["setting"] for t in table] == [r["setting"] for r in rows]
    assert all(t["oracle tool ok"] is True for t in table) and all(t["before"] == o for t, o in zip(table, out))
    free_memory()


def test_plot_log_history_writes_a_png(tmp_path: Path) -> None:
    logs = [{"step": 1, "loss": 0.69, "rewards/margins": 0.0, "rewards/accuracies": 0.0},
            {"step": 2, "loss": 0.5, "rewards/margins": 0.3, "rewards/accuracies": 1.0}, {"train_loss": 0.6}]
    path = plot_log_history(logs, tmp_path / "sub" / "dpo.png", "DPO")
    assert path == tmp_path / "sub" / "dpo.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
