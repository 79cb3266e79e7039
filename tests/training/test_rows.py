"""Loading and checking SFT / DPO rows, and fitting them to the token budget (the inference context builder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from petool_lib.core import DataError, parse_prompt, render_prompt  # noqa: E402
from petool_lib.training import (  # noqa: E402
    balanced_order,
    count_tokens,
    fit_row,
    load_rows,
    official_rows,
    prepare_rows,
    validate_row,
)

from .helpers import BUDGET, tiny_stage  # noqa: E402


def test_load_rows_errors_name_file_line_and_field(tmp_path: Path) -> None:
    good = {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "{}"}]}
    (tmp_path / "sft.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(DataError, match=r"sft.jsonl:2: not valid JSON"):
        load_rows(tmp_path, "sft")
    (tmp_path / "sft.jsonl").write_text(json.dumps({"prompt": good["prompt"]}) + "\n")
    with pytest.raises(DataError, match=r"sft.jsonl:1: missing field 'completion'"):
        load_rows(tmp_path, "sft")
    bad_role = dict(good, completion=[{"role": "user", "content": "x"}])
    (tmp_path / "sft.jsonl").write_text(json.dumps(bad_role) + "\n")
    with pytest.raises(DataError, match=r"'completion'\[0\] has role 'user'"):
        load_rows(tmp_path, "sft")
    with pytest.raises(DataError, match="no dpo.jsonl"):
        load_rows(tmp_path, "dpo")


def test_validate_row_and_stage_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="here: row is a list"):
        validate_row([], "sft", "here")
    no_user = {"prompt": [{"role": "system", "content": "s"}], "completion": [{"role": "assistant", "content": "{}"}]}
    with pytest.raises(DataError, match="no user message"):
        validate_row(no_user, "sft", "here")
    with pytest.raises(ValueError, match="unknown stage 'ppo'"):
        load_rows(tmp_path, "ppo")
    (tmp_path / "sft.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no rows"):
        load_rows(tmp_path, "sft")


def test_official_rows_cycle_the_settings(official) -> None:
    entries = official[:4]
    rows = official_rows(entries)
    assert [r["setting"] for r in rows] == ["preferred", "ratings", "chronological", "preferred"]
    assert rows[1]["prompt"][0]["content"] == entries[1].prompts["ratings"]
    assert json.loads(rows[0]["completion"][0]["content"]) == entries[0].ground_truth
    for r in rows:
        validate_row(r, "sft", "official")


def test_fit_row_is_the_inference_context_builder(data_dir: Path, tokenizer: Any) -> None:
    """Training rows are fitted exactly as prediction prompts: evidence items first (core.context.fit_prompt)."""
    from petool_lib.core.context import evidence_items, fit_prompt

    rows = [r for r in load_rows(data_dir, "sft") if evidence_items(parse_prompt(r["prompt"][0]["content"]))]
    assert rows
    checked = 0
    for row in rows[:6]:
        if count_tokens(tokenizer, row["prompt"] + row["completion"]) <= BUDGET:
            continue
        res = fit_row(row, "sft", tokenizer, BUDGET)
        assert res.fits and res.tokens <= BUDGET and res.evidence_items > 0
        assert res.tokens == count_tokens(tokenizer, res.row["prompt"] + res.row["completion"])

        def count(text: str) -> int:
            return count_tokens(tokenizer, [{"role": "system", "content": text}, row["prompt"][1]] + row["completion"])

        want, rep = fit_prompt(parse_prompt(row["prompt"][0]["content"]), row["prompt"][1]["content"], count, BUDGET)
        assert res.row["prompt"][0]["content"] == want.render()
        assert (res.kept_evidence, res.dropped, res.description_limit) == (rep.kept_evidence, rep.dropped_items,
                                                                           rep.description_limit)
        assert res.row["prompt"][1] == row["prompt"][1] and res.row["completion"] == row["completion"]
        checked += 1
    assert checked


@pytest.mark.parametrize("context", ["compact", "compact-late", "compact-call-first", "compact-tally"])
def test_fit_row_compact_modes_rewrite_every_row_as_inference_does(data_dir: Path, tokenizer: Any,
                                                                   context: str) -> None:
    """The compact modes rewrite a row even within budget, exactly as build_chat_prompt does at inference."""
    from petool_lib.core.context import fit_prompt

    row = next(r for r in load_rows(data_dir, "sft") if len(parse_prompt(r["prompt"][0]["content"]).history) > 2)
    res = fit_row(row, "sft", tokenizer, None, context=context)
    want, _ = fit_prompt(parse_prompt(row["prompt"][0]["content"]), row["prompt"][1]["content"], len, None, context)
    assert res.fits and res.row["prompt"][0]["content"] == want.render() != row["prompt"][0]["content"]
    back = parse_prompt(res.row["prompt"][0]["content"])
    assert back.history_last == (context in ("compact-late", "compact-call-first"))
    assert back.call_first == (context == "compact-call-first")
    assert all(("your_history" in c) == (context == "compact-tally") for c in back.candidates)
    assert res.row["completion"] == row["completion"]


def test_fit_row_oldest_context_drops_oldest_history_only(data_dir: Path, tokenizer: Any) -> None:
    row = next(r for r in load_rows(data_dir, "sft") if len(parse_prompt(r["prompt"][0]["content"]).history) > 5)
    full = count_tokens(tokenizer, row["prompt"] + row["completion"])
    assert full > BUDGET
    res = fit_row(row, "sft", tokenizer, BUDGET, context="oldest")
    assert res.fits and res.dropped > 0 and res.tokens <= BUDGET
    assert res.tokens == count_tokens(tokenizer, res.row["prompt"] + res.row["completion"])
    before, after = parse_prompt(row["prompt"][0]["content"]), parse_prompt(res.row["prompt"][0]["content"])
    assert after.history == before.history[res.dropped:]  # the oldest items went, the rest is intact
    assert after.candidates == before.candidates and after.format_text == before.format_text
    assert after.task_text == before.task_text
    assert res.row["prompt"][1] == row["prompt"][1] and res.row["completion"] == row["completion"]
    # one item fewer would not have fitted (minimal trimming)
    longer = render_prompt(before.setting, before.history[res.dropped - 1:], before.candidates)
    msgs = [{"role": "system", "content": longer}, row["prompt"][1]] + row["completion"]
    assert count_tokens(tokenizer, msgs) > BUDGET
    # a budget below the empty-history size cannot be met: the row is returned untouched, flagged
    tiny_budget = fit_row(row, "sft", tokenizer, 100, context="oldest")
    assert not tiny_budget.fits and tiny_budget.row is row


def test_prepare_rows_counts_skipped_and_kept(data_dir: Path, tokenizer: Any) -> None:
    rows = load_rows(data_dir, "dpo")[:6]
    cfg = tiny_stage("dpo", token_budget=100, max_examples=None)
    out, stats = prepare_rows(rows, "dpo", tokenizer, cfg)
    assert out == [] and stats.too_long_skipped == 6 and stats.considered == 6 and stats.used == 0
    cfg = tiny_stage("dpo", token_budget=100, too_long="keep", max_examples=None)
    out, stats = prepare_rows(rows, "dpo", tokenizer, cfg)
    assert len(out) == 6 and stats.too_long_kept == 6 and stats.trimmed_rows == 0
    assert set(out[0]) == {"prompt", "chosen", "rejected"}
    cfg = tiny_stage("dpo", token_budget=BUDGET, max_examples=4)
    out, stats = prepare_rows(load_rows(data_dir, "dpo"), "dpo", tokenizer, cfg)
    assert len(out) == 4 and stats.used == 4 and stats.considered >= 4
    assert stats.considered == stats.used + stats.too_long_skipped
    assert stats.not_considered == stats.source_rows - stats.considered
    assert sorted(stats.by_setting.values()) in ([1, 1, 2], [2, 2])  # setting-balanced prefix
    d = stats.to_dict()
    assert d["not_considered"] == stats.not_considered and d["tokens_mean"] == round(stats.tokens_total / 4, 1)
    assert len(d["entry_ids"]) == 4 and d["tokens_max"] <= BUDGET


def test_balanced_order_is_seeded_and_interleaved() -> None:
    rows = [{"setting": s} for s in ["a"] * 4 + ["b"] * 4]
    o1, o2, o3 = balanced_order(rows, 0), balanced_order(rows, 0), balanced_order(rows, 1)
    assert o1 == o2 and sorted(o1) == list(range(8))
    assert [rows[i]["setting"] for i in o1] == ["a", "b"] * 4
    assert o1 != o3


def test_prepare_rows_can_train_on_one_setting_only(data_dir: Path, tokenizer: Any) -> None:
    """The paper's "trained on rating-integrated only" experiment: other settings are filtered and counted."""
    rows = load_rows(data_dir, "sft")
    n_ratings = sum(r["setting"] == "ratings" for r in rows)
    assert 0 < n_ratings < len(rows)
    cfg = tiny_stage("sft", token_budget=BUDGET, max_examples=1000, settings=("r",))  # None would keep the profile cap
    assert cfg.settings == ("ratings",)  # aliases normalized
    out, stats = prepare_rows(rows, "sft", tokenizer, cfg)
    assert set(stats.by_setting) == {"ratings"} and stats.other_settings == len(rows) - n_ratings
    assert stats.considered == n_ratings and stats.not_considered == 0
    assert stats.used + stats.too_long_skipped == n_ratings and len(out) == stats.used
    with pytest.raises(ValueError, match="settings: unknown setting 'weekly'"):
        tiny_stage("sft", settings=("weekly",))


def test_prepare_rows_can_train_on_some_decision_cases_only(data_dir: Path, tokenizer: Any) -> None:
    """``cases``: only the rows whose history shows the answer (visible / switch); the others counted as filtered."""
    rows = load_rows(data_dir, "sft")
    wanted = [r for r in rows if r["case"] in ("visible", "switch")]
    assert 0 < len(wanted) < len(rows)
    cfg = tiny_stage("sft", token_budget=BUDGET, max_examples=1000, cases=("visible", "switch"))
    out, stats = prepare_rows(rows, "sft", tokenizer, cfg)
    assert stats.other_cases == len(rows) - len(wanted) and stats.considered == len(wanted)
    assert stats.not_considered == 0 and stats.used + stats.too_long_skipped == len(wanted) and len(out) == stats.used
    assert set(stats.by_case) <= {"visible", "switch"} and sum(stats.by_case.values()) == stats.used
    assert set(stats.entry_ids) <= {r["entry_id"] for r in wanted}
    _, all_stats = prepare_rows(rows, "sft", tokenizer, tiny_stage("sft", token_budget=BUDGET, max_examples=1000))
    assert all_stats.other_cases == 0 and len(all_stats.by_case) > len(stats.by_case)
    with pytest.raises(DataError, match=r"sft row \S+/preferred: no 'case' field"):
        prepare_rows([{k: v for k, v in r.items() if k != "case"} for r in rows], "sft", tokenizer, cfg)
    with pytest.raises(DataError, match=r"no row has a case in \['conflict'\]"):
        prepare_rows(rows, "sft", tokenizer, tiny_stage("sft", cases=("conflict",)))
    with pytest.raises(ValueError, match="cases must name some of"):
        tiny_stage("sft", cases=("copy",))


def test_prepare_rows_can_rename_the_providers_of_a_fraction_of_rows(data_dir: Path, tokenizer: Any) -> None:
    rows = load_rows(data_dir, "sft")
    base = tiny_stage("sft", token_budget=BUDGET, max_examples=12)
    plain, s0 = prepare_rows(rows, "sft", tokenizer, base)
    assert s0.renamed_rows == 0
    every, s1 = prepare_rows(rows, "sft", tokenizer, tiny_stage("sft", token_budget=BUDGET, max_examples=12,
                                                                 rename_providers=1.0))
    assert s1.renamed_rows == s1.used == len(every) and s1.to_dict()["renamed_rows"] == s1.used
    originals = {json.loads(r["completion"][0]["content"])["tool_name"] for r in rows}
    for r in every:
        name = json.loads(r["completion"][0]["content"])["tool_name"]
        assert name not in originals and name in r["prompt"][0]["content"]  # renamed, and among the candidates
    half, s2 = prepare_rows(rows, "sft", tokenizer, tiny_stage("sft", token_budget=BUDGET, max_examples=12,
                                                                rename_providers=0.5))
    assert 0 < s2.renamed_rows < s2.used  # seeded per row
    assert prepare_rows(rows, "sft", tokenizer, tiny_stage("sft", token_budget=BUDGET, max_examples=12,
                                                           rename_providers=0.5))[0] == half
    with pytest.raises(ValueError, match="rename_providers must be a fraction"):
        tiny_stage("sft", rename_providers=1.5)
    words, s3 = prepare_rows(rows, "sft", tokenizer, tiny_stage("sft", token_budget=BUDGET, max_examples=12,
                                                                 rename_providers=1.0, rename_style="words"))
    assert s3.renamed_rows == s3.used and words != every
    for r in words:
        name = json.loads(r["completion"][0]["content"])["tool_name"]
        assert name not in originals and name in r["prompt"][0]["content"]
    with pytest.raises(ValueError, match="rename_style must be one of"):
        tiny_stage("sft", rename_style="letters")


def test_prepare_rows_target_name_cuts_every_completion_after_the_tool_name(data_dir: Path, tokenizer: Any) -> None:
    from petool_lib.core.data import name_text

    for stage, cols in (("sft", ("completion",)), ("dpo", ("chosen", "rejected"))):
        rows = load_rows(data_dir, stage)
        full, _ = prepare_rows(rows, stage, tokenizer, tiny_stage(stage, token_budget=BUDGET, max_examples=6))
        cut, _ = prepare_rows(rows, stage, tokenizer, tiny_stage(stage, token_budget=BUDGET, max_examples=6,
                                                                 target="name"))
        assert len(cut) == len(full) > 0
        for a, b in zip(full, cut):
            assert a["prompt"] == b["prompt"]
            for col in cols:
                name = json.loads(a[col][-1]["content"])["tool_name"]
                assert b[col][-1]["content"] == name_text(name) and b[col][-1]["role"] == "assistant"
    broken = [{**load_rows(data_dir, "sft")[0], "completion": [{"role": "assistant", "content": "not json"}]}]
    with pytest.raises(DataError, match="target 'name' needs a JSON call"):
        prepare_rows(broken, "sft", tokenizer, tiny_stage("sft", target="name"))
    with pytest.raises(ValueError, match="target must be one of"):
        tiny_stage("sft", target="params")
