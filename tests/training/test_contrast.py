"""Contrast rows (training.contrast): the history's evidence flipped so that the rejected provider is the answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from petool_lib.core import DataError, parse_prompt, render_prompt
from petool_lib.core.prompts import HistoryItem
from petool_lib.training import flip_row, prepare_rows, rejected_turns, row_key
from petool_lib.training.sft import SFTRunner

from .helpers import tiny, tiny_stage, write_rows

P, R, Q, X = "<Sports>.<FootApi>", "<Sports>.<BasketAPI>", "<Sports>.<sportapi>", "<Music>.<Billboard>"
CANDIDATES = [{"tool_name": f"{p}.<Search>", "tool_description": f"search with {p}",
               "required_parameters": [{"name": "term", "type": "STRING", "description": "what to look for"}],
               "optional_parameters": []} for p in (P, R, Q)]
CANDIDATES.append({"tool_name": f"{X}.<Chart>", "tool_description": "charts", "required_parameters": [],
                   "optional_parameters": []})


def _item(provider: str, api: str, rating: int | None = None) -> HistoryItem:
    return HistoryItem(f"use {provider} {api}", {"tool_name": f"{provider}.<{api}>", "parameters": {}}, rating)


def _turn(provider: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": json.dumps({"tool_name": f"{provider}.<Search>",
                                                         "parameters": {"term": "kevin"}})}]


def _row(setting: str, history: list[HistoryItem], entry_id: int = 1, dpo: bool = False) -> dict[str, Any]:
    prompt = [{"role": "system", "content": render_prompt(setting, history, CANDIDATES)},
              {"role": "user", "content": "Search for kevin."}]
    answers = {"chosen": _turn(P), "rejected": _turn(R)} if dpo else {"completion": _turn(P)}
    return {"prompt": prompt, **answers, "setting": setting, "entry_id": entry_id, "case": "any"}


def _history(row: dict[str, Any]) -> list[tuple[str, int | None]]:
    parsed = parse_prompt(row["prompt"][0]["content"], row["setting"])
    return [(h.tool_name, h.rating) for h in parsed.history]


def test_ratings_flip_rates_the_rejected_provider_1_and_the_answer_0() -> None:
    avoid = _row("ratings", [_item(R, "Search", 0), _item(X, "Chart", 1), _item(R, "Teams", 0)])
    flipped = flip_row(avoid, _turn(R))
    assert flipped is not None
    assert _history(flipped) == [(f"{R}.<Search>", 1), (f"{X}.<Chart>", 1), (f"{R}.<Teams>", 1)]
    assert flipped["completion"] == _turn(R) and flipped["case"] == "visible" and flipped["contrast"] is True
    before = parse_prompt(avoid["prompt"][0]["content"], "ratings")
    after = parse_prompt(flipped["prompt"][0]["content"], "ratings")
    assert after.candidates == before.candidates and after.task_text == before.task_text  # only the ratings moved
    assert [h.instruction for h in after.history] == [h.instruction for h in before.history]
    assert flipped["prompt"][1] == avoid["prompt"][1] and avoid["completion"] == _turn(P)  # the source is untouched
    switch = _row("ratings", [_item(P, "Search", 1), _item(R, "Search", 0)])
    flipped = flip_row(switch, _turn(R))
    assert _history(flipped) == [(f"{P}.<Search>", 0), (f"{R}.<Search>", 1)] and flipped["case"] == "switch"


def test_chronological_flip_makes_the_rejected_provider_the_newest() -> None:
    row = _row("chronological", [_item(R, "Search"), _item(R, "Teams"), _item(X, "Chart"), _item(P, "Search"),
                                 _item(Q, "Teams"), _item(P, "Players")])
    flipped = flip_row(row, _turn(R))
    assert [n for n, _ in _history(flipped)] == [f"{P}.<Search>", f"{P}.<Players>", f"{X}.<Chart>", f"{Q}.<Teams>",
                                                 f"{R}.<Search>", f"{R}.<Teams>"]
    assert flipped["completion"] == _turn(R) and flipped["case"] == "switch"
    # R shown without P: moving R to the end would change nothing the compact context modes keep
    assert flip_row(_row("chronological", [_item(R, "Search"), _item(X, "Chart")]), _turn(R)) is None


def test_dpo_flip_swaps_chosen_and_rejected_and_flipping_back_restores_the_row() -> None:
    row = _row("ratings", [_item(P, "Search", 1), _item(X, "Chart", 1), _item(R, "Search", 0)], dpo=True)
    flipped = flip_row(row, rejected=_turn(Q))  # a DPO row brings its own rejected call
    assert flipped["chosen"] == row["rejected"] and flipped["rejected"] == row["chosen"]
    back = flip_row(flipped)
    assert {k: v for k, v in back.items() if k not in ("case", "contrast")} == \
        {k: v for k, v in row.items() if k != "case"}


def test_rows_without_a_counterpart_are_left_alone() -> None:
    shown = [_item(R, "Search", 0), _item(P, "Search", 1)]
    assert flip_row(_row("preferred", [_item(P, "Search")]), _turn(R)) is None  # the setting shows no rejected call
    assert flip_row(_row("ratings", [_item(P, "Search", 1)]), _turn(R)) is None  # the rejected provider is not shown
    assert flip_row(_row("ratings", shown), None) is None  # no rejected call
    assert flip_row(_row("ratings", shown), _turn(P)) is None  # same provider
    assert flip_row(_row("ratings", shown), [{"role": "assistant", "content": "not a call"}]) is None
    broken = _row("ratings", shown)
    broken["prompt"] = [{"role": "system", "content": "no PEToolBench prompt"}, broken["prompt"][1]]
    with pytest.raises(DataError, match=r"entry 1 \(ratings\): cannot parse the prompt"):
        flip_row(broken, _turn(R))


def _rows(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    sft, dpo = [], []
    for i in range(n):
        setting = ("preferred", "ratings", "chronological")[i % 3]
        rating = {"preferred": (None, None), "ratings": (1, 0), "chronological": (None, None)}[setting]
        history = [_item(P, "Search", rating[0])] if setting == "preferred" else \
            [_item(R, "Search", rating[1]), _item(X, "Chart", rating[0]), _item(P, "Search", rating[0])]
        sft.append(_row(setting, history, entry_id=i))
        dpo.append(_row(setting, history, entry_id=i, dpo=True))
    return sft, dpo


def test_prepare_rows_adds_each_drawn_rows_contrast_row_on_top_of_max_examples(tokenizer: Any) -> None:
    sft, dpo = _rows(12)
    rejected = rejected_turns(dpo)
    assert rejected[row_key(sft[1])] == _turn(R)
    plain, s0 = prepare_rows(sft, "sft", tokenizer, tiny_stage("sft", max_examples=9))
    assert s0.contrast_rows == s0.contrast_skipped == 0 and len(plain) == 9
    out, s1 = prepare_rows(sft, "sft", tokenizer, tiny_stage("sft", max_examples=9, contrast_rows=1.0),
                           rejected=rejected)
    assert s1.contrast_rows == 6 and s1.contrast_skipped == 3  # 3 preferred-only rows of 9 have none
    assert len(out) == s1.used == 15 and s1.considered == 9
    flips = [i for i, r in enumerate(out) if r not in plain]
    assert len(flips) == 6 and [r for r in out if r in plain] == plain
    for i in flips:  # each right after its source row, answered with the rejected call
        assert out[i]["completion"] == _turn(R) and out[i - 1] in plain and out[i - 1]["completion"] == _turn(P)
    renamed, s2 = prepare_rows(dpo, "dpo", tokenizer, tiny_stage("dpo", max_examples=9, contrast_rows=1.0,
                                                                 rename_providers=1.0))
    assert s2.contrast_rows == 6 and s2.renamed_rows == s2.used == 15
    for a, b in zip(renamed, renamed[1:]):  # a renamed pair keeps its names and candidate order: a minimal pair
        if a["chosen"] == b["rejected"] and a["rejected"] == b["chosen"]:
            pa = parse_prompt(a["prompt"][0]["content"])
            pb = parse_prompt(b["prompt"][0]["content"])
            assert pa.candidates == pb.candidates and pa.history != pb.history
            assert sorted(h.tool_name for h in pa.history) == sorted(h.tool_name for h in pb.history)
            break
    else:
        pytest.fail("no renamed row followed by its contrast row")
    with pytest.raises(DataError, match="contrast_rows needs the rejected calls"):
        prepare_rows(sft, "sft", tokenizer, tiny_stage("sft", contrast_rows=1.0))
    with pytest.raises(ValueError, match="contrast_rows must be a fraction"):
        tiny_stage("sft", contrast_rows=2.0)


def test_a_contrast_row_whose_fitted_prompt_is_its_sources_is_skipped(tokenizer: Any) -> None:
    from dataclasses import replace

    from petool_lib.training.rows import count_tokens

    sft, dpo = _rows(12)
    rejected = rejected_turns(dpo)
    row = next(r for r in sft if r["setting"] == "ratings")
    flipped = flip_row(row, rejected[row_key(row)])
    assert flipped is not None and flipped["prompt"] != row["prompt"]
    bare = replace(parse_prompt(row["prompt"][0]["content"], "ratings"), history=[]).render()
    tokens = max(count_tokens(tokenizer, [{"role": "system", "content": bare}, row["prompt"][1]] + r["completion"])
                 for r in (row, flipped))
    cfg = tiny_stage("sft", max_examples=1, contrast_rows=1.0, token_budget=tokens + 3, context="evidence")
    out, st = prepare_rows([row], "sft", tokenizer, cfg, rejected=rejected)  # room for no history item
    assert parse_prompt(out[0]["prompt"][0]["content"]).history == []
    assert len(out) == st.used == 1 and st.contrast_rows == 0 and st.contrast_skipped == 1
    roomy = tiny_stage("sft", max_examples=1, contrast_rows=1.0, token_budget=None, context="evidence")
    out, st = prepare_rows([row], "sft", tokenizer, roomy, rejected=rejected)
    assert len(out) == 2 and st.contrast_rows == 1 and st.contrast_skipped == 0


def test_the_sft_runner_takes_the_rejected_calls_from_the_dpo_rows_beside_its_data(tmp_path: Path) -> None:
    sft, dpo = _rows(3)
    write_rows(tmp_path / "sft.jsonl", sft)
    cfg = tiny_stage("sft", contrast_rows=1.0)
    runner = SFTRunner(tmp_path / "sft.jsonl", cfg, profile=tiny(), model="tiny", out=tmp_path / "o", backend="hf")
    with pytest.raises(DataError, match="contrast_rows takes the rejected calls from the DPO rows"):
        runner.rejected_calls()
    write_rows(tmp_path / "dpo.jsonl", dpo)
    assert runner.rejected_calls() == rejected_turns(dpo)
    assert SFTRunner(tmp_path, cfg, profile=tiny(), model="tiny", out=tmp_path / "o").rejected_calls() == \
        rejected_turns(dpo)
    assert SFTRunner(tmp_path, tiny_stage("sft"), profile=tiny(), model="tiny", out=tmp_path / "o")\
        .rejected_calls() is None
