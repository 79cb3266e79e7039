"""The call grammar compiled by xgrammar: the same language as the built-in grammar, forced text in the tokenizer's
own tokenization, and (with the tiny model) decoding that never writes an invalid call."""

from __future__ import annotations

import json
import random

import pytest
import torch

from petool_lib.harness.scoring import parse_paper
from petool_lib.inference import DecodeConfig, predict
from petool_lib.inference.grammar import GrammarError, ToolCallGrammar, string_safe, tool_keys, vocab_index
from petool_lib.inference.xgrammar_call import XGrammarToolCall, call_ebnf, number_digits

from .conftest import BUDGET
from .test_grammar import CANDIDATES

pytest.importorskip("xgrammar")


def xgrammar(tiny, candidates=CANDIDATES, **kw) -> XGrammarToolCall:
    width = tiny.model.get_output_embeddings().weight.shape[0]
    return XGrammarToolCall(candidates, tiny.tokenizer, width, tiny.eos_ids, **kw)


def accepts(tiny, text: str, candidates=CANDIDATES, **kw) -> bool:
    """Whether the xgrammar call grammar accepts ``text`` as a whole call."""
    g = xgrammar(tiny, candidates, **kw)
    return bool(g.matcher.accept_string(text)) and g.matcher.is_completed()


def call(name: str, params: dict) -> str:
    return json.dumps({"tool_name": name, "parameters": params}, ensure_ascii=False)


def test_the_grammar_text_names_every_candidate_and_key():
    text = call_ebnf(CANDIDATES, 16, 20)
    for c in CANDIDATES:
        assert json.dumps(json.dumps(c["tool_name"]))[1:-1] in text
    assert "{0,16}" in text and text.startswith("root ::= call0 | call1 | call2")
    assert number_digits(20) == (9, 9) and number_digits(1) == (1, 0)
    with pytest.raises(GrammarError):
        call_ebnf([], 16)
    with pytest.raises(GrammarError):
        call_ebnf([{"name": "no tool_name"}], 16)


def test_accepts_official_calls_and_rejects_everything_else(tiny):
    ok = [call("<Weather>.<SkyCast>.<forecast>", {"city": "Paris", "days": 3}),
          call("<Weather>.<SkyCast>.<forecast>", {"city": "", "days": -0.5}),
          call("<Weather>.<MeteoPro>.<current>", {"location": 12}),
          call("<Finance>.<Quotes>.<price>", {})]
    for text in ok:
        assert accepts(tiny, text, max_value_chars=8), text
    bad = [call("<Weather>.<Other>.<forecast>", {"city": "Paris", "days": 3}),  # not a candidate
           call("<Weather>.<SkyCast>.<forecast>", {"city": "Paris"}),  # a documented key missing
           call("<Weather>.<SkyCast>.<forecast>", {"days": 3, "city": "Paris"}),  # documented order
           call("<Weather>.<SkyCast>.<forecast>", {"city": "a{b}", "days": 3}),  # braces in a value
           call("<Weather>.<SkyCast>.<forecast>", {"city": 'say "hi"', "days": 3}),  # quote (escaped)
           call("<Weather>.<SkyCast>.<forecast>", {"city": "Parisienne", "days": 3}),  # over 8 characters
           call("<Weather>.<SkyCast>.<forecast>", {"city": "Paris", "days": 12345678901}),  # over 10 characters
           call("<Weather>.<SkyCast>.<forecast>", {"city": "Paris", "days": 3}).replace(", ", ","),  # separators
           call("<Finance>.<Quotes>.<price>", {}) + " "]
    for text in bad:
        assert not accepts(tiny, text, max_value_chars=8, max_number_chars=10), text


def _random_walk(g, rng: random.Random, max_steps: int = 200) -> list[int]:
    out = list(g.forced_prefix())
    for _ in range(max_steps):
        if g.done:
            return out
        allowed = g.allowed()
        ids = torch.nonzero(allowed).flatten().tolist() if isinstance(allowed, torch.Tensor) else list(allowed)
        tok = rng.choice(ids)
        g.advance(tok)
        out += [tok] + g.forced_prefix()
    raise AssertionError("the walk did not finish")


def test_same_language_as_the_builtin_grammar_both_ways(tiny):
    rng = random.Random(0)
    vocab = vocab_index(tiny.tokenizer)
    for _ in range(12):  # the built-in grammar writes; xgrammar accepts
        b = ToolCallGrammar(CANDIDATES, vocab, tiny.eos_ids, max_value_chars=6, max_number_chars=8)
        text = tiny.tokenizer.decode(_random_walk(b, rng))
        assert accepts(tiny, text, max_value_chars=6, max_number_chars=8), text
    for _ in range(12):  # xgrammar writes; the result is a call the built-in grammar's rules allow
        g = xgrammar(tiny, max_value_chars=6, max_number_chars=8)
        text = tiny.tokenizer.decode(_random_walk(g, rng))
        obj = json.loads(text)
        assert text == json.dumps(obj, ensure_ascii=False) and parse_paper(text) is not None
        cand = next(c for c in CANDIDATES if c["tool_name"] == obj["tool_name"])
        assert list(obj["parameters"]) == tool_keys(cand)
        for v in obj["parameters"].values():
            if isinstance(v, str):
                assert len(v) <= 6 and string_safe(v), text
            else:
                assert isinstance(v, (int, float)) and len(json.dumps(v)) <= 8, text


def test_forced_text_is_fed_in_the_tokenizers_own_tokenization(tiny):
    g = xgrammar(tiny)
    prefix = g.forced_prefix()
    text = tiny.tokenizer.decode(prefix)
    assert text.startswith('{"tool_name": "')
    assert prefix == tiny.tokenizer.encode(text, add_special_tokens=False)  # canonical, not a greedy longest match
    single = xgrammar(tiny, [CANDIDATES[2]])  # one candidate without parameters: the whole call is forced
    ids = single.forced_prefix()
    assert tiny.tokenizer.decode(ids) == call(CANDIDATES[2]["tool_name"], {}) and single.done
    assert ids == tiny.tokenizer.encode(tiny.tokenizer.decode(ids), add_special_tokens=False)
    allowed = single.allowed()
    assert set(torch.nonzero(allowed).flatten().tolist()) <= set(tiny.eos_ids)


def test_a_token_outside_the_grammar_is_an_error(tiny):
    g = xgrammar(tiny)
    g.forced_prefix()
    bad = tiny.tokenizer.encode("zzz", add_special_tokens=False)[0]
    with pytest.raises(GrammarError):
        g.advance(bad)


@pytest.mark.parametrize("mode,batch", [("constrained", 1), ("constrained", 3), ("rank", 1)])
def test_decoding_with_xgrammar_never_writes_an_invalid_call(small, tiny, mode, batch):
    cfg = DecodeConfig(max_value_chars=24, grammar="xgrammar")
    rows = predict(small, tiny, ["preferred"], mode, cfg, BUDGET, batch_size=batch, progress=False)
    assert len(rows) == len(small)
    for e, r in zip(small, rows):
        assert r["complete"], r
        obj = json.loads(r["response"])
        assert obj["tool_name"] in e.candidate_names and parse_paper(r["response"]) is not None
        cand = next(c for c in e.candidates if c["tool_name"] == obj["tool_name"])
        assert list(obj["parameters"]) == tool_keys(cand)
    if mode == "rank":  # the candidate is chosen by the same trie: the same tool as with the built-in grammar
        builtin = predict(small, tiny, ["preferred"], mode, DecodeConfig(max_value_chars=24), BUDGET, progress=False)
        assert [json.loads(r["response"])["tool_name"] for r in rows] == \
            [json.loads(r["response"])["tool_name"] for r in builtin]
