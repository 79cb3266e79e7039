"""The tool-call grammar on its own, against the tiny model's tokenizer (SmolLM2's, built locally).

A walk through the grammar is driven by text: at each step the allowed token whose text is the longest prefix of
what is left is fed, so each test states the call it writes.
"""

from __future__ import annotations

import json
import random

import pytest
import torch

from petool_lib.inference.grammar import (
    GrammarError, ToolCallGrammar, head_text, name_text, string_safe, tool_keys, vocab_index,
)

CANDIDATES = [
    {"tool_name": "<Weather>.<SkyCast>.<forecast>", "required_parameters": [{"name": "city", "type": "STRING"}],
     "optional_parameters": [{"name": "days", "type": "NUMBER"}]},
    {"tool_name": "<Weather>.<MeteoPro>.<current>", "required_parameters": [{"name": "location"}],
     "optional_parameters": []},
    {"tool_name": "<Finance>.<Quotes>.<price>", "required_parameters": [], "optional_parameters": []},
]


@pytest.fixture(scope="module")
def vocab(tiny):
    return vocab_index(tiny.tokenizer)


def grammar(tiny, vocab, candidates=CANDIDATES, **kw) -> ToolCallGrammar:
    return ToolCallGrammar(candidates, vocab, tiny.eos_ids, **kw)


def allowed_ids(g: ToolCallGrammar) -> list[int]:
    a = g.allowed()
    return torch.nonzero(a).flatten().tolist() if isinstance(a, torch.Tensor) else list(a)


def feed(g: ToolCallGrammar, text: str) -> list[int]:
    """Feed ``text`` through the grammar (longest allowed token first); returns the tokens fed."""
    fed = []
    while text:
        options = [t for t in allowed_ids(g) if g.vocab.texts[t] and text.startswith(g.vocab.texts[t])]
        assert options, f"the grammar allows no token for {text!r} after {g.text!r}"
        tok = max(options, key=lambda t: len(g.vocab.texts[t]))
        g.advance(tok)
        fed.append(tok)
        text = text[len(g.vocab.texts[tok]):]
    return fed


def test_forced_prefix_is_the_json_head_shared_by_every_candidate(tiny, vocab):
    g = grammar(tiny, vocab)
    prefix = g.forced_prefix()
    text = tiny.tokenizer.decode(prefix)
    assert text.startswith('{"tool_name": "') and text == g.text
    heads = [head_text(c["tool_name"], tool_keys(c)) for c in CANDIDATES]
    assert all(h.startswith(text) for h in heads)
    assert len(allowed_ids(g)) >= 2  # the candidates part here: a choice for the model, not forced
    assert g.forced_prefix() == []  # nothing more is forced
    single = grammar(tiny, vocab, CANDIDATES[1:2])
    assert tiny.tokenizer.decode(single.forced_prefix()) == '{"tool_name": "<Weather>.<MeteoPro>.<current>", ' \
                                                           '"parameters": {"location":'


def test_allowed_tokens_only_spell_candidate_names(tiny, vocab):
    """Every path through the head trie ends in one candidate's head, and every candidate is reachable."""
    reached = {}
    todo: list[list[int]] = [[]]
    while todo:
        path = todo.pop()
        g = grammar(tiny, vocab)
        for t in path:
            g.advance(t)
        if g.chosen is not None:
            reached[g.chosen] = g.text
            continue
        todo.extend(path + [t] for t in allowed_ids(g))
    assert reached == {c["tool_name"]: head_text(c["tool_name"], tool_keys(c)) for c in CANDIDATES}
    g = grammar(tiny, vocab)
    bad = next(t for t in range(vocab.size) if t not in set(allowed_ids(g)))
    with pytest.raises(GrammarError, match="not a continuation"):
        g.advance(bad)


def test_select_tool_jumps_to_the_end_of_a_head(tiny, vocab):
    g = grammar(tiny, vocab)
    ids = g.select_tool(0)
    assert tiny.tokenizer.decode(ids) == head_text(CANDIDATES[0]["tool_name"], ["city", "days"])
    assert g.chosen == CANDIDATES[0]["tool_name"] and not g.done
    assert name_text(CANDIDATES[0]["tool_name"]) in g.text
    with pytest.raises(GrammarError, match="fresh grammar"):
        g.select_tool(1)


def test_a_full_call_with_a_string_and_a_number(tiny, vocab):
    g = grammar(tiny, vocab)
    call = {"tool_name": "<Weather>.<SkyCast>.<forecast>", "parameters": {"city": "Paris", "days": 3}}
    feed(g, json.dumps(call))
    assert g.done and g.chosen == call["tool_name"]
    assert json.loads(g.text) == call and g.text == json.dumps(call)
    assert allowed_ids(g) == list(tiny.eos_ids)  # only the end of turn after the closing }}
    g.advance(tiny.eos_ids[0])
    assert g.done and g.max_new_tokens() == 1


def test_a_tool_without_parameters_ends_after_its_head(tiny, vocab):
    g = grammar(tiny, vocab)
    feed(g, json.dumps({"tool_name": "<Finance>.<Quotes>.<price>", "parameters": {}}))
    assert g.done and g.chosen == "<Finance>.<Quotes>.<price>"


def test_a_string_closes_only_into_the_text_that_must_follow(tiny, vocab):
    g = grammar(tiny, vocab)
    feed(g, '{"tool_name": "<Weather>.<SkyCast>.<forecast>", "parameters": {"city": "Par')
    assert g.phase == "string"
    follow = ', "days":'
    for t in allowed_ids(g):
        text = vocab.texts[t]
        if '"' in text:  # a closer: safe content, the quote, then a prefix of what follows
            u, p = text.split('"', 1)
            assert string_safe(u) and follow.startswith(p), text
        else:
            assert string_safe(text), text
    with pytest.raises(GrammarError):
        g.advance(vocab.encode("{")[0])  # braces never appear inside a value


def test_string_values_are_bounded(tiny, vocab):
    g = grammar(tiny, vocab, max_value_chars=4)
    feed(g, '{"tool_name": "<Weather>.<MeteoPro>.<current>", "parameters": {"location": "Rome')
    assert g.phase == "string" and g.content_len == 4
    assert all('"' in vocab.texts[t] for t in allowed_ids(g))  # full: only closing tokens remain
    feed(g, '"}}')
    assert g.done and json.loads(g.text)["parameters"] == {"location": "Rome"}


def test_numbers_are_valid_json_and_close_into_what_follows(tiny, vocab):
    g = grammar(tiny, vocab, max_number_chars=4)
    feed(g, '{"tool_name": "<Weather>.<SkyCast>.<forecast>", "parameters": {"city": "Oslo", "days": 0')
    assert g.phase == "number"
    texts = {vocab.texts[t] for t in allowed_ids(g)}
    assert "3" not in texts and "-" not in texts  # no leading zero, no sign after a digit
    assert "." in texts and "}}" in texts  # a fraction, or the end of the call
    feed(g, ".25")
    assert g.phase == "number"
    assert all(vocab.texts[t] in "}}" for t in allowed_ids(g))  # 4 characters: the number must end
    feed(g, "}}")
    assert g.done and json.loads(g.text)["parameters"] == {"city": "Oslo", "days": 0.25}
    g = grammar(tiny, vocab)
    feed(g, '{"tool_name": "<Weather>.<SkyCast>.<forecast>", "parameters": {"city": "Oslo", "days": -')
    assert g.phase == "number" and all(vocab.texts[t][0] in "0123456789" for t in allowed_ids(g))  # "-" alone


def test_max_new_tokens_bounds_the_longest_walk(tiny, vocab):
    """Always taking the shortest allowed token (the longest possible output) stays within the first bound."""
    g = grammar(tiny, vocab, max_value_chars=5, max_number_chars=3)
    bound, n = g.max_new_tokens(), 0
    while not g.done:
        options = allowed_ids(g)
        tok = min(options, key=lambda t: (len(vocab.texts[t] or ""), t))
        g.advance(tok)
        n += 1
        assert n + g.max_new_tokens() <= bound + 1  # the remaining bound never exceeds what is left of the first
    assert n + 1 <= bound  # every emitted token plus the end of turn
    assert json.loads(g.text)["tool_name"] in {c["tool_name"] for c in CANDIDATES}


def test_grammar_errors(tiny, vocab):
    with pytest.raises(GrammarError, match="at least one candidate"):
        ToolCallGrammar([], vocab, tiny.eos_ids)
    with pytest.raises(GrammarError, match="end-of-turn"):
        ToolCallGrammar(CANDIDATES, vocab, [])
    g = grammar(tiny, vocab)
    g.select_tool(0)
    with pytest.raises(GrammarError, match="special token"):
        g.advance(tiny.eos_ids[0])  # an end of turn cannot start a value
    g = grammar(tiny, vocab, CANDIDATES[1:2])
    feed(g, '{"tool_name": "<Weather>.<MeteoPro>.<current>", "parameters": {"location": "x"')
    assert g.phase == "forced"
    with pytest.raises(GrammarError, match="forced token"):
        g.advance(next(t for t in range(vocab.size) if t != g.queue[0] and vocab.texts[t]))


def test_duplicate_candidates_are_one_tool(tiny, vocab):
    g = grammar(tiny, vocab, CANDIDATES + [dict(CANDIDATES[0])])
    assert [t.name for t in g.tools] == [c["tool_name"] for c in CANDIDATES]
    assert tool_keys(CANDIDATES[0]) == ["city", "days"]


def test_grammar_random_walk_is_always_valid(test_set, tiny):
    """Any path through the grammar (random allowed tokens) ends in valid JSON within the token bound."""
    vocab = vocab_index(tiny.tokenizer)
    rng = random.Random(0)
    for e in test_set[:40]:
        g = ToolCallGrammar(e.candidates, vocab, tiny.eos_ids, max_value_chars=6, max_number_chars=5)
        bound, ids = g.max_new_tokens(), []
        while not g.done:
            allowed = g.allowed()
            if isinstance(allowed, torch.Tensor):
                allowed = torch.nonzero(allowed).flatten().tolist()
            tok = rng.choice(allowed)
            g.advance(tok)
            ids.append(tok)
        assert len(ids) + 1 <= bound
        assert set(g.allowed()) == set(tiny.eos_ids)
        obj = json.loads(tiny.tokenizer.decode(ids))
        assert obj["tool_name"] in e.candidate_names
        assert list(obj["parameters"]) == tool_keys(next(c for c in e.candidates if c["tool_name"] == obj["tool_name"]))
        assert all(isinstance(v, (str, int, float)) for v in obj["parameters"].values())
