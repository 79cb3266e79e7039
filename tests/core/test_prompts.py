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
