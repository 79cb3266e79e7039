"""Decision cases of (entry, setting) and the history oracle: hand-made entries for every case, and the official
test set's shares and ceilings (the project's planning figures 71.5 / 90.2 / 90.2)."""

from __future__ import annotations

import pytest

from petool_lib.core.data import Entry
from petool_lib.core.prompts import render_prompt
from petool_lib.harness.cases import (PICKS, decision_case, decision_cases, history_choice, history_oracle,
                                     pick_kind)

A, B, C = "<Data>.<Alpha>.<get_x>", "<Data>.<Beta>.<get_x>", "<Data>.<Gamma>.<get_x>"
OTHER = "<Music>.<Delta>.<play>"


def _cand(name):
    return {"tool_name": name, "tool_description": "", "required_parameters": [], "optional_parameters": []}


def _item(name, rating=None):
    d = {"instruction": "do it", "tool_call": {"tool_name": name, "parameters": {}}}
    if rating is not None:
        d["rating"] = rating
    return d


def make_entry(pref, ratings, chrono, group=(A, B), gt=A):
    cands = [_cand(n) for n in (*group, OTHER)]
    split = [g.split(".") for g in group]
    return Entry(
        entry_id=1, query="q",
        prompts={"preferred": render_prompt("preferred", pref, cands), "ratings": render_prompt("ratings", ratings, cands),
                 "chronological": render_prompt("chronological", chrono, cands)},
        candidates=cands, ground_truth={"tool_name": gt, "parameters": {}}, api_ground_truth={}, func="f",
        same_func=[{"category_name": c[1:-1], "tool_name": t[1:-1], "api_name": a[1:-1]} for c, t, a in split])


def test_every_case_by_hand():
    e = make_entry(pref=[_item(A), _item(OTHER)], ratings=[_item(B, 0), _item(A, 1)], chrono=[_item(B), _item(A)])
    assert [decision_case(e, s) for s in ("preferred", "ratings", "chronological")] == ["visible", "switch", "switch"]
    e = make_entry(pref=[_item(OTHER)], ratings=[_item(B, 0)], chrono=[_item(B), _item(B)])
    assert [decision_case(e, s) for s in ("preferred", "ratings", "chronological")] == ["absent", "avoid", "avoid"]
    assert decision_case(e, "none") == "absent"
    e = make_entry(pref=[_item(B)], ratings=[_item(A, 0)], chrono=[_item(A), _item(B)])
    assert [decision_case(e, s) for s in ("preferred", "ratings", "chronological")] == ["conflict"] * 3


def test_the_oracle_reads_the_history_like_the_settings_say():
    e = make_entry(pref=[_item(A)], ratings=[_item(B, 0), _item(A, 1)], chrono=[_item(B), _item(A)], group=(A, B, C))
    assert history_choice(e, "preferred") == {"<Data>.<Alpha>": 1.0}
    assert history_choice(e, "ratings") == {"<Data>.<Alpha>": 1.0}
    assert history_choice(e, "chronological") == {"<Data>.<Alpha>": 1.0}  # the later provider
    e = make_entry(pref=[], ratings=[_item(B, 0)], chrono=[_item(B)], group=(A, B, C))
    assert history_choice(e, "preferred") == pytest.approx({p: 1 / 3 for p in ("<Data>.<Alpha>", "<Data>.<Beta>",
                                                                                "<Data>.<Gamma>")})
    assert history_choice(e, "ratings") == {"<Data>.<Alpha>": 0.5, "<Data>.<Gamma>": 0.5}  # Beta excluded
    assert history_choice(e, "chronological") == {"<Data>.<Alpha>": 0.5, "<Data>.<Gamma>": 0.5}
    assert history_oracle([e], "ratings") == 0.5 and history_oracle([], "ratings") == 0.0


def test_official_cases_and_ceilings(official):
    if len(official) < 1000:
        pytest.skip("needs the whole official test set")
    out = decision_cases(official)
    assert out["preferred"]["counts"] == {"absent": 511, "visible": 489, "switch": 0, "avoid": 0, "conflict": 0}
    for s in ("ratings", "chronological"):
        assert out[s]["counts"] == {"absent": 0, "visible": 0, "switch": 415, "avoid": 585, "conflict": 0}
    assert [round(100 * out[s]["oracle"], 1) for s in ("preferred", "ratings", "chronological")] == [71.5, 90.2, 90.2]


def test_pick_kind_says_what_was_picked_seen_from_the_history():
    e = make_entry(pref=[_item(OTHER)], ratings=[_item(B, 0), _item(OTHER, 1)], chrono=[_item(B), _item(OTHER)],
                   group=(A, B, C))
    assert pick_kind(e, "ratings", A) == "answer"
    assert pick_kind(e, "ratings", B) == "shown provider"  # rated 0 in the history, copied anyway
    assert pick_kind(e, "chronological", B) == "shown provider"
    assert pick_kind(e, "preferred", B) == "unshown provider"  # preferred-only shows no group member here
    assert pick_kind(e, "ratings", C) == "unshown provider"
    assert pick_kind(e, "ratings", OTHER) == "other function"
    assert pick_kind(e, "ratings", "<Made>.<Up>.<name>") == "other function"
    assert pick_kind(e, "ratings", None) == pick_kind(e, "ratings", "") == "no tool"
    assert set(PICKS) == {"answer", "shown provider", "unshown provider", "other function", "no tool"}
