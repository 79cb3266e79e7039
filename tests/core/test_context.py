"""The context builder: official prompts pass through untouched when they fit; over budget, evidence first."""

from __future__ import annotations

import pytest

from petool_lib.core.context import (DESCRIPTION_FLOOR, evidence_items, fit_prompt, history_priority, make_messages,
                                     shorten_descriptions, template_ids)
from petool_lib.core.data import SETTINGS
from petool_lib.core.prompts import parse_prompt, trim_history


def chars(text: str) -> int:
    return len(text)


def _over(prompt, extra=0):
    """A budget the prompt misses: the length with about half of its history removed."""
    half = prompt.history[len(prompt.history) // 2:]
    from dataclasses import replace
    return len(replace(prompt, history=half).render()) + extra


def _entry_with_evidence(official, setting, min_items=2):
    for e in official:
        p = parse_prompt(e.prompts[setting], setting)
        ev = evidence_items(p)
        if len(ev) >= min_items and len(p.history) >= len(ev) + 6:
            return e, p
    pytest.skip("no suitable entry")


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_prompt_that_fits_is_byte_identical(official, setting):
    e = official[0]
    p = parse_prompt(e.prompts[setting], setting)
    for mode in ("evidence", "oldest"):
        out, rep = fit_prompt(p, e.query, chars, len(e.prompts[setting]), mode)
        assert out.render() == e.prompts[setting]
        assert (rep.kept_items, rep.dropped_items, rep.description_limit, rep.fits) == (len(p.history), 0, None, True)


@pytest.mark.parametrize("setting", ["ratings", "chronological"])
def test_evidence_items_are_kept_first_in_their_order_with_ratings(official, setting):
    e, p = _entry_with_evidence(official, setting)
    ev = evidence_items(p)
    budget = _over(p)
    out, rep = fit_prompt(p, e.query, chars, budget, "evidence")
    assert len(out.render()) <= budget and rep.fits and rep.dropped_items > 0
    kept_ids = [id(h) for h in out.history]
    # kept items appear in their original relative order, unchanged (ratings included)
    positions = [next(i for i, h in enumerate(p.history) if id(h) == k) for k in kept_ids]
    assert positions == sorted(positions)
    assert all(h.rating == p.history[i].rating for h, i in zip(out.history, positions))
    if rep.kept_evidence < len(ev):  # budget too small for all evidence: then no non-evidence item is kept
        assert set(positions) <= set(ev)
        assert set(positions) == set(sorted(ev)[-len(positions):])  # the newest evidence items
    else:
        assert set(ev) <= set(positions)
    assert rep.kept_items == len(out.history) and rep.evidence_items == len(ev)
    # the prompt's other parts are untouched (descriptions only when evidence items would not fit otherwise)
    assert out.task_text == p.task_text and out.format_text == p.format_text
    assert (out.candidates == p.candidates) == (rep.description_limit is None)


def test_priority_puts_evidence_before_the_rest(official):
    e, p = _entry_with_evidence(official, "ratings")
    ev = evidence_items(p)
    order = history_priority(p, e.query)
    assert sorted(order) == list(range(len(p.history)))
    assert order[: len(ev)] == sorted(ev, reverse=True)


@pytest.mark.parametrize("setting", SETTINGS)
def test_oldest_mode_is_the_reference_trimming(official, setting):
    e, p = _entry_with_evidence(official, setting, min_items=0)
    budget = _over(p, extra=37)
    out, rep = fit_prompt(p, e.query, chars, budget, "oldest")
    ref, dropped = trim_history(p, lambda t: len(t) <= budget)
    assert out.render() == ref.render() and rep.dropped_items == dropped


def _long_docs_entry(official, setting="ratings"):
    from petool_lib.core.context import _longest_description
    for e in official:
        p = parse_prompt(e.prompts[setting], setting)
        if len(evidence_items(p)) >= 3 and _longest_description(p.candidates) > 3 * DESCRIPTION_FLOOR:
            return e, p
    pytest.skip("no suitable entry")


def test_descriptions_are_shortened_down_to_the_floor_before_evidence_is_dropped(official):
    from dataclasses import replace
    e, p = _long_docs_entry(official)
    ev = evidence_items(p)
    only_ev = replace(p, history=[h for i, h in enumerate(p.history) if i in set(ev)])
    # room for every evidence item only with descriptions cut to floor + 50 characters
    budget = len(replace(only_ev, candidates=shorten_descriptions(p.candidates, DESCRIPTION_FLOOR + 50)).render())
    assert len(only_ev.render()) > budget
    out, rep = fit_prompt(p, e.query, chars, budget, "evidence")
    assert rep.fits and rep.kept_evidence == len(ev) and DESCRIPTION_FLOOR <= rep.description_limit
    assert [h.instruction for h in out.history] == [h.instruction for h in only_ev.history]
    # oldest mode drops items instead and keeps the descriptions while any history is left
    out_old, rep_old = fit_prompt(p, e.query, chars, budget, "oldest")
    assert rep_old.description_limit is None and rep_old.dropped_items > 0
    # below that: descriptions at the floor, the newest evidence items kept as far as they fit
    newest = sorted(ev)[-1]
    tight = len(replace(p, history=[p.history[newest]],
                        candidates=shorten_descriptions(p.candidates, DESCRIPTION_FLOOR)).render())
    out, rep = fit_prompt(p, e.query, chars, tight, "evidence")
    assert rep.fits and rep.description_limit == DESCRIPTION_FLOOR and rep.kept_items == 1
    assert out.history[0].instruction == p.history[newest].instruction


def test_descriptions_go_below_the_floor_only_with_no_history_left(official):
    e = max(official[:200], key=lambda e: len(e.prompts["preferred"]))
    p = parse_prompt(e.prompts["preferred"], "preferred")
    from dataclasses import replace
    empty_at_floor = len(replace(p, history=[], candidates=shorten_descriptions(p.candidates, DESCRIPTION_FLOOR))
                         .render())
    budget = empty_at_floor - 200
    out, rep = fit_prompt(p, e.query, chars, budget, "evidence")
    assert rep.fits and len(out.render()) <= budget and out.history == []
    assert rep.description_limit is not None and 0 <= rep.description_limit < DESCRIPTION_FLOOR
    assert len(out.candidates) == len(p.candidates)
    for a, b in zip(out.candidates, p.candidates):
        assert a["tool_name"] == b["tool_name"] and list(a) == list(b)
        for key in ("required_parameters", "optional_parameters"):
            assert [(x["name"], x["type"], x.get("default")) for x in a[key]] == \
                   [(x["name"], x["type"], x.get("default")) for x in b[key]]
    # with no room at all it says so instead of pretending
    out, rep = fit_prompt(p, e.query, chars, 10, "evidence")
    assert not rep.fits and rep.description_limit == 0 and len(out.candidates) == len(p.candidates)


def test_shorten_descriptions_marks_cuts():
    cands = [{"tool_name": "<A>.<B>.<c>", "tool_description": "x" * 50,
              "required_parameters": [{"name": "q", "type": "STRING", "description": "y" * 30, "default": "d" * 40}],
              "optional_parameters": []}]
    out = shorten_descriptions(cands, 10)
    assert out[0]["tool_description"] == "x" * 10 + "..."
    assert out[0]["required_parameters"][0] == {"name": "q", "type": "STRING", "description": "y" * 10 + "...",
                                                "default": "d" * 40}
    assert cands[0]["tool_description"] == "x" * 50  # input untouched


def test_unknown_mode_is_an_error(official):
    p = parse_prompt(official[0].prompts["preferred"], "preferred")
    with pytest.raises(ValueError, match="unknown context mode"):
        fit_prompt(p, "q", chars, 10, "newest")


def test_every_official_prompt_fits_the_smollm2_window(official):
    """No official prompt is lost for its length: all 3,000 fit SmolLM2's 8,192 tokens (minus 64 for the answer)
    through the chat template after the builder (the tiny model carries SmolLM2's tokenizer)."""
    from transformers import AutoTokenizer

    from petool_lib.core.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("tiny"))
    window = 8192 - 64
    shortened = 0
    for e in official:
        def count(system: str) -> int:
            return len(template_ids(tok, make_messages(system, e.query)))
        for s in SETTINGS:
            text = e.prompts[s]
            out, rep = fit_prompt(parse_prompt(text, s), e.query, count, window, "evidence")
            assert rep.fits, f"entry {e.entry_id} ({s}): {rep}"
            shortened += rep.description_limit is not None
    assert shortened > 0  # the ~28 entries over the window with no history were shortened, not dropped


def test_build_chat_prompt_evidence_mode_records_what_it_did(official):
    from transformers import AutoTokenizer

    from petool_lib.core.context import build_chat_prompt
    from petool_lib.core.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("tiny"))
    e, p = _entry_with_evidence(official, "ratings")
    full = build_chat_prompt(e, "ratings", tok, None, context="evidence")
    assert full.messages[0]["content"] == e.prompts["ratings"] and "context" not in full.extra
    budget = full.prompt_tokens - 200
    cp = build_chat_prompt(e, "ratings", tok, budget, context="evidence")
    rep = cp.extra["context"]
    assert cp.prompt_tokens <= budget and not cp.over_budget
    assert rep["tokens_before"] > budget >= rep["tokens_after"] and rep["dropped_items"] == cp.trimmed_items > 0
    assert rep["kept_evidence"] == rep["evidence_items"]  # 200 tokens are found among the non-evidence items
    # a budget below the candidates alone: oldest mode gives up (over budget), evidence mode shortens descriptions
    no_history = build_chat_prompt(e, "ratings", tok, 1, context="oldest").prompt_tokens  # all items dropped
    tight = build_chat_prompt(e, "ratings", tok, no_history - 40, context="oldest")
    fitted = build_chat_prompt(e, "ratings", tok, no_history - 40, context="evidence")
    assert tight.over_budget and not fitted.over_budget and fitted.extra["context"]["description_limit"] is not None
    with pytest.raises(ValueError, match="unknown context mode"):
        build_chat_prompt(e, "ratings", tok, 700, context="recent")


@pytest.mark.parametrize("setting", SETTINGS)
def test_compact_mode_keeps_only_evidence_and_short_descriptions(official, setting):
    from petool_lib.core.context import COMPACT_DESCRIPTION, compact_prompt

    e, p = _entry_with_evidence(official, setting, min_items=1)
    ev = evidence_items(p)
    out, rep = fit_prompt(p, e.query, chars, None, "compact")  # no budget: compact applies anyway
    assert [id(h) for h in out.history] == [id(p.history[i]) for i in ev]  # evidence only, original order
    assert out.candidate_names == p.candidate_names  # no candidate is ever dropped or reordered
    assert all(len(c.get("tool_description") or "") <= COMPACT_DESCRIPTION + 3 for c in out.candidates)
    assert (rep.mode, rep.items, rep.evidence_items, rep.kept_items, rep.kept_evidence) == (
        "compact", len(p.history), len(ev), len(ev), len(ev))
    assert rep.description_limit == COMPACT_DESCRIPTION and rep.tokens_after < rep.tokens_before
    assert out.render() == compact_prompt(p).render()
    # over budget, the evidence procedure runs on the compact prompt: the newest evidence items are kept
    small = len(compact_prompt(p).render()) - 1
    tight, rep2 = fit_prompt(p, e.query, chars, small, "compact")
    assert len(tight.render()) <= small and rep2.fits and rep2.kept_items <= len(ev)


@pytest.mark.parametrize("setting", SETTINGS)
def test_compact_late_is_compact_with_the_history_after_the_candidates(official, setting):
    from dataclasses import replace

    from petool_lib.core.data import HISTORY_MARK
    from petool_lib.core.prompts import TOOLS_HEAD

    e, p = _entry_with_evidence(official, setting, min_items=1)
    early, rep = fit_prompt(p, e.query, chars, None, "compact")
    late, rep_late = fit_prompt(p, e.query, chars, None, "compact-late")
    assert late.history_last and not early.history_last
    assert replace(late, history_last=False).render() == early.render()  # same items, candidates and texts
    text = late.render()
    assert text.startswith(TOOLS_HEAD) and text.index(HISTORY_MARK) > text.index(late.candidates[-1]["tool_name"])
    assert rep_late.mode == "compact-late" and rep_late.kept_items == rep.kept_items
    # over budget, the same evidence procedure (the layout moves bytes, it adds none)
    small = len(early.render()) - 1
    tight, rep2 = fit_prompt(p, e.query, chars, small, "compact-late")
    assert tight.history_last and len(tight.render()) <= small and rep2.fits


@pytest.mark.parametrize("setting", SETTINGS)
def test_compact_call_first_is_compact_late_with_each_call_before_its_instruction(official, setting):
    from dataclasses import replace

    e, p = _entry_with_evidence(official, setting, min_items=1)
    late, rep_late = fit_prompt(p, e.query, chars, None, "compact-late")
    first, rep = fit_prompt(p, e.query, chars, None, "compact-call-first")
    assert first.call_first and first.history_last and not late.call_first
    assert replace(first, call_first=False).render() == late.render()  # same items, candidates and texts
    assert len(first.render()) == len(late.render()) and rep.mode == "compact-call-first"
    assert rep.kept_items == rep_late.kept_items == len(evidence_items(p)) > 0
    small = len(late.render()) - 1  # over budget: the same evidence procedure, the layout kept
    tight, rep2 = fit_prompt(p, e.query, chars, small, "compact-call-first")
    assert tight.call_first and len(tight.render()) <= small and rep2.fits


def test_build_chat_prompt_compact_mode_applies_within_budget(official):
    from transformers import AutoTokenizer

    from petool_lib.core.context import build_chat_prompt
    from petool_lib.core.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("tiny"))
    e, p = _entry_with_evidence(official, "ratings")
    full = build_chat_prompt(e, "ratings", tok, None, context="evidence")
    cp = build_chat_prompt(e, "ratings", tok, None, context="compact")
    assert cp.prompt_tokens < full.prompt_tokens and not cp.over_budget
    assert cp.extra["context"]["mode"] == "compact"
    assert cp.extra["context"]["kept_items"] == len(evidence_items(p))
    late = build_chat_prompt(e, "ratings", tok, None, context="compact-late")
    assert late.extra["context"]["mode"] == "compact-late"
    assert abs(late.prompt_tokens - cp.prompt_tokens) <= 10  # the same text, reordered
    assert parse_prompt(late.messages[0]["content"], "ratings").history_last


def _tally_prompt(setting, ratings=(0, 0, 1, None)):
    from petool_lib.core.prompts import HistoryItem, Prompt

    calls = ["<A>.<Alpha>.<get>", "<A>.<Alpha>.<list>", "<A>.<Beta>.<get>", "<Z>.<Other>.<x>"]
    history = [HistoryItem(f"q{i}", {"tool_name": n, "parameters": {}},
                           r if setting == "ratings" else None) for i, (n, r) in enumerate(zip(calls, ratings))]
    cands = [{"tool_name": n, "tool_description": "d", "required_parameters": []}
             for n in ("<A>.<Alpha>.<get>", "<A>.<Beta>.<get>", "<A>.<Gamma>.<get>", "no provider")]
    return Prompt(setting, history, cands)


def test_tally_candidates_counts_each_candidates_provider_in_the_whole_history():
    from dataclasses import replace

    from petool_lib.core.context import TALLY_FIELD, tally_candidates

    lines = {s: [c.get(TALLY_FIELD) for c in tally_candidates(_tally_prompt(s))] for s in SETTINGS}
    assert lines["ratings"] == ["provider used 2 times: 0 rated 1, 2 rated 0",
                                "provider used 1 time: 1 rated 1, 0 rated 0", "provider never used", None]
    assert lines["chronological"] == ["provider used 2 times, last in call 2 of 4",
                                      "provider used 1 time, last in call 3 of 4", "provider never used", None]
    assert lines["preferred"] == ["provider used 2 times", "provider used 1 time", "provider never used", None]
    unrated = tally_candidates(_tally_prompt("ratings", ratings=(1, None, 0, None)))
    assert unrated[0][TALLY_FIELD] == "provider used 2 times: 1 rated 1, 0 rated 0, 1 unrated"
    p = _tally_prompt("ratings")
    out = tally_candidates(p)
    assert [list(c)[:2] for c in out[:3]] == [["tool_name", TALLY_FIELD]] * 3  # right after the name
    assert [{k: v for k, v in c.items() if k != TALLY_FIELD} for c in out] == p.candidates  # nothing else changes
    assert TALLY_FIELD not in p.candidates[0]  # the input is not modified
    again = tally_candidates(replace(p, candidates=out))  # annotating twice replaces the line, never adds one
    assert again == out


@pytest.mark.parametrize("setting", SETTINGS)
def test_compact_tally_is_compact_with_every_candidate_annotated(official, setting):
    from dataclasses import replace

    from petool_lib.core.context import TALLY_FIELD, tally_candidates

    e, p = _entry_with_evidence(official, setting, min_items=1)
    plain, rep = fit_prompt(p, e.query, chars, None, "compact")
    tally, rep_t = fit_prompt(p, e.query, chars, None, "compact-tally")
    assert rep_t.mode == "compact-tally" and rep_t.kept_items == rep.kept_items
    assert rep_t.tokens_before == rep.tokens_before
    assert tally.candidate_names == p.candidate_names and all(TALLY_FIELD in c for c in tally.candidates)
    bare = [{k: v for k, v in c.items() if k != TALLY_FIELD} for c in tally.candidates]
    assert replace(tally, candidates=bare).render() == plain.render()  # the same items, candidates and texts
    # the lines count the whole history, also the items the budget drops
    whole = [c[TALLY_FIELD] for c in tally_candidates(p)]
    assert [c[TALLY_FIELD] for c in tally.candidates] == whole
    small = len(tally.render()) - 1
    tight, rep2 = fit_prompt(p, e.query, chars, small, "compact-tally")
    assert len(tight.render()) <= small and rep2.fits and [c[TALLY_FIELD] for c in tight.candidates] == whole
