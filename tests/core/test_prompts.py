import json

import pytest

from petool_lib.core.data import SETTINGS
from petool_lib.core.prompts import FORMAT_TEXT, TASK_TEXT, PromptError, parse_prompt, render_prompt, trim_history


def test_every_official_prompt_renders_byte_for_byte(official):
    n = 0
    for e in official:
        for s in SETTINGS:
            p = parse_prompt(e.prompts[s])
            assert p.setting == s
            assert p.candidates == e.candidates
            assert p.task_text == TASK_TEXT[s] and p.format_text == FORMAT_TEXT
            assert p.render() == e.prompts[s], (e.entry_id, s)
            # rendering from the typed parts alone (default texts) gives the same bytes
            assert render_prompt(s, p.history, p.candidates) == e.prompts[s]
            n += 1
    assert n == 3000


@pytest.mark.parametrize("setting", SETTINGS)
def test_history_last_layout_round_trips(official, setting):
    from dataclasses import replace

    from petool_lib.core.data import HISTORY_MARK
    from petool_lib.core.prompts import TOOLS_HEAD

    for e in official[:50]:
        p = parse_prompt(e.prompts[setting], setting)
        late = replace(p, history_last=True)
        text = late.render()
        assert text.startswith(TOOLS_HEAD) and text.endswith(FORMAT_TEXT)
        assert text.index(p.task_text + HISTORY_MARK) > text.index(json.dumps(p.candidates, ensure_ascii=False))
        assert len(text) == len(e.prompts[setting]) - 1  # the same bytes, moved (one line break fewer)
        if setting == "ratings":  # each item's rating comes before its call
            assert all(list(json.loads(json.dumps(h.to_dict(rating_first=True))))[0] == "rating" for h in p.history)
            assert text.count('{"rating": ') == len(p.history)
        back = parse_prompt(text, setting)
        assert back.history_last and back.render() == text
        assert (back.history, back.candidates, back.task_text) == (p.history, p.candidates, p.task_text)
        assert replace(back, history_last=False).render() == e.prompts[setting]


@pytest.mark.parametrize("setting", SETTINGS)
def test_call_first_layout_round_trips_and_puts_each_rating_before_its_call(official, setting):
    from dataclasses import replace

    from petool_lib.core.prompts import render_prompt

    for e in official[:50]:
        p = parse_prompt(e.prompts[setting], setting)
        late = replace(p, history_last=True)
        first = replace(late, call_first=True)
        text = first.render()
        assert len(text) == len(late.render())  # the same bytes, each item's keys reordered
        back = parse_prompt(text, setting)
        assert back.render() == text and back.history_last and back.call_first == bool(p.history)
        assert (back.history, back.candidates, back.task_text) == (p.history, p.candidates, p.task_text)
        assert replace(back, call_first=False).render() == late.render()
        assert not parse_prompt(late.render(), setting).call_first
        for h in p.history:  # rating (if any), then the call (its name first), then the instruction
            head = '{"rating": %d, ' % h.rating if setting == "ratings" else "{"
            assert head + '"tool_call": {"tool_name": ' + json.dumps(h.tool_name, ensure_ascii=False) in text
    with pytest.raises(ValueError, match="call_first needs history_last"):
        render_prompt("ratings", [], [], call_first=True)


def test_history_parts(official):
    e = official[0]
    rated = parse_prompt(e.prompts["ratings"]).history
    assert all(h.rating in (0, 1) for h in rated) and any(h.rating == 0 for h in rated)
    assert all(h.rating is None for h in parse_prompt(e.prompts["preferred"]).history)
    assert all(h.tool_name.startswith("<") for h in rated)


def test_trim_drops_oldest_only(official):
    e = official[0]
    p = parse_prompt(e.prompts["chronological"])
    full = len(p.render())
    budget = full - 600
    trimmed, dropped = trim_history(p, lambda t: len(t) <= budget)
    assert dropped > 0 and len(trimmed.render()) <= budget
    assert trimmed.history == p.history[dropped:]
    assert trimmed.candidates == p.candidates and trimmed.render().endswith(FORMAT_TEXT)
    # one item fewer would have fitted too? no: dropping one less must not fit (minimal trimming)
    assert len(type(p)(p.setting, p.history[dropped - 1:], p.candidates).render()) > budget
    same, zero = trim_history(p, lambda t: True)
    assert zero == 0 and same.render() == e.prompts["chronological"]


def test_bad_prompt():
    with pytest.raises(PromptError):
        parse_prompt("just some text")
    with pytest.raises(PromptError, match="history"):
        parse_prompt(TASK_TEXT["preferred"] + "Interaction history is:\n[{]" +
                     "\n\nAvailable tools you can call with input parameters are listed here:\n[]" + FORMAT_TEXT)
    tools = "Available tools you can call with input parameters are listed here:\n"
    with pytest.raises(PromptError, match="history"):  # the history-last layout, broken the same way
        parse_prompt(tools + "[]\n" + TASK_TEXT["preferred"] + "Interaction history is:\n[{]" + FORMAT_TEXT)
    with pytest.raises(PromptError, match="candidate"):
        parse_prompt(tools + "[{]\n" + TASK_TEXT["preferred"] + "Interaction history is:\n[]" + FORMAT_TEXT)
    with pytest.raises(PromptError, match="start with the tool list"):
        parse_prompt(TASK_TEXT["preferred"] + tools + "[]\nInteraction history is:\n[]" + FORMAT_TEXT)
    with pytest.raises(PromptError, match="new line"):
        parse_prompt(tools + "[]" + TASK_TEXT["preferred"].lstrip("\n") + "Interaction history is:\n[]" + FORMAT_TEXT)
