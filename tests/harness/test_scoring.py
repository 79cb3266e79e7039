import json

import pytest

from petool_lib.core.data import Entry
from petool_lib.harness.scoring import RowScore, classify, parse_paper, parse_robust, score_response


def tp(r: RowScore) -> tuple[bool, bool]:
    return (r.tool_correct, r.param_correct)

GT = "<Weather>.<SkyCast>.<forecast>"
SAME = "<Weather>.<MeteoPro>.<forecast>"
OTHER = "<Travel>.<TripAtlas>.<search>"


def _entry(params=None) -> Entry:
    def cand(name, req):
        return {"tool_name": name, "tool_description": "d", "required_parameters": [{"name": r} for r in req],
                "optional_parameters": []}

    def api(name):
        cat, tool, a = name[1:-1].split(">.<")
        return {"category_name": cat, "tool_name": tool, "api_name": a}

    return Entry(entry_id=1, query="weather in Paris", prompts={}, candidates=[cand(GT, ["q", "n"]), cand(SAME, ["q", "n"]),
                 cand(OTHER, ["q"])], ground_truth={"tool_name": GT, "parameters": params or {"q": "Paris", "n": 10}},
                 api_ground_truth={"category_name": "Weather"}, func="1", same_func=[api(GT), api(SAME)])


def test_paper_exact_rules():
    e = _entry()
    ok = json.dumps({"tool_name": GT, "parameters": {"q": "Paris", "n": 10}})
    assert tp(score_response(e, ok, "paper")) == (True, True)
    assert tp(score_response(e, "Sure! " + ok + " done", "paper")) == (True, True)
    # numeric string is a different value for the paper's dict equality, but right for robust
    s = json.dumps({"tool_name": GT, "parameters": {"q": "paris ", "n": "10"}})
    assert tp(score_response(e, s, "paper")) == (True, False)
    assert tp(score_response(e, s, "robust")) == (True, True)
    # no DOTALL: a multi-line JSON does not match the paper's pattern
    multi = json.dumps({"tool_name": GT, "parameters": {"q": "Paris", "n": 10}}, indent=2)
    assert parse_paper(multi) is None and parse_robust(multi) is not None
    assert tp(score_response(e, multi, "paper")) == (False, False)
    # empty / unparsable responses are wrong on both
    for bad in ("", None, '{"tool_name": "x", "parameters": {"a": }}', "no json here"):
        assert tp(score_response(e, bad, "paper")) == (False, False)


def test_paper_param_acc_is_independent_of_tool():
    e = _entry()
    r = score_response(e, json.dumps({"tool_name": SAME, "parameters": {"q": "Paris", "n": 10}}), "paper")
    assert (r.tool_correct, r.param_correct, r.error) == (False, True, "preference_mismatch")


def test_paper_regex_cuts_nested_parameters():
    e = _entry({"q": {"city": "Paris"}})
    s = json.dumps({"tool_name": GT, "parameters": {"q": {"city": "Paris"}}})
    assert parse_paper(s) is None  # the reference pattern stops at the first "}}"
    assert tp(score_response(e, s, "robust")) == (True, True)


@pytest.mark.parametrize("text", [
    '```json\n{"parameters": {"n": 10.0, "q": "PARIS"}, "tool_name": "' + GT + '"}\n```',
    'I will call it: {"tool_name": "' + GT + '", "parameters": "{\\"q\\": \\"Paris\\", \\"n\\": 10}"} ok',
    '{"thought": "x"} then {"tool_name": " ' + GT + ' ", "parameters": {"q": " Paris", "n": "1e1"}}',
])
def test_robust_extraction(text):
    assert tp(score_response(_entry(), text, "robust")) == (True, True)


def test_robust_never_repairs():
    truncated = '{"tool_name": "' + GT + '", "parameters": {"q": "Paris", "n": 10}'
    assert parse_robust(truncated) is None
    assert score_response(_entry(), truncated, "robust").error == "invalid_format"


@pytest.mark.parametrize("call,expected", [
    (None, "invalid_format"),
    ({"tool_name": "<X>.<Y>.<Z>", "parameters": {}}, "tool_hallucination"),
    ({"tool_name": OTHER, "parameters": {"q": "Paris"}}, "functionality_mismatch"),
    ({"tool_name": SAME, "parameters": {"q": "Paris", "n": 10}}, "preference_mismatch"),
    ({"tool_name": GT, "parameters": {"q": "Paris"}}, "param_name_mismatch"),
    ({"tool_name": GT, "parameters": {"q": "Lyon", "n": 10}}, "param_value_mismatch"),
    ({"tool_name": GT, "parameters": {"q": "paris", "n": 10.0}}, "correct"),
])
def test_taxonomy(call, expected):
    text = json.dumps(call) if call else "I don't know"
    assert score_response(_entry(), text, "robust").error == expected
    assert classify(_entry(), parse_robust(text)) == expected
