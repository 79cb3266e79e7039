"""Hostile responses: a response is model output, so whatever it holds it is scored (``invalid_format`` when no call
can be read), in bounded time, and counted against the full denominator; it never aborts the file."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from petool_lib.core.data import load_test_set
from petool_lib.harness.evaluate import main as evaluate_main
from petool_lib.harness.scoring import (
    MAX_JSON_DEPTH, MAX_SCAN_CHARS, PAPER_PATTERN, SCORINGS, paper_span, parse_paper, parse_robust, score_response,
)

from .inputs_data import CALL, GT, perfect_rows, small_test_set, write_rows

GOOD = json.dumps(CALL)
INVALID = ("invalid_format", False)  # (taxonomy category, Tool correct under the paper's rule)
# name -> (response, (robust category, paper Tool correct)); Param is never correct
HOSTILE = {
    "5000-digit number": ('{"tool_name": "%s", "parameters": {"city": %s}}' % (GT, "9" * 5000), INVALID),
    "5000-digit number in string parameters": (  # robust keeps the unreadable string: a wrong-parameters call
        json.dumps({"tool_name": GT, "parameters": '{"city": ' + "9" * 5000 + "}"}), ("param_name_mismatch", False)),
    "1000 nested objects": ('{"a": ' * 1000 + "1" + "}" * 1000, INVALID),
    "1000 nested braces": ("{" * 1000 + "}" * 1000, INVALID),
    "parameters nested 1000 deep": (
        '{"tool_name": "%s", "parameters": {"city": %s}}' % (GT, "[" * 1000 + "]" * 1000), INVALID),
    "parameters nested over the bound": (  # the paper's rule has no depth bound: it reads the (right) tool
        '{"tool_name": "%s", "parameters": {"city": %s}}' % (GT, "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH),
        ("invalid_format", True)),
    "500,000 braces before a call": ("{" * 500_000 + GOOD, INVALID),
    '250,000 {" before a call': ('{"' * 250_000 + GOOD, INVALID),
    "a call after the scan bound": (" " * MAX_SCAN_CHARS + GOOD, INVALID),
}


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory):
    return load_test_set(small_test_set(tmp_path_factory.mktemp("t"), 1))[0]


@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize("scoring", SCORINGS)
def test_hostile_response_is_scored_wrong_not_an_error(entry, name: str, scoring: str) -> None:
    text, (category, paper_tool) = HOSTILE[name]
    t = time.perf_counter()
    r = score_response(entry, text, scoring)
    took = time.perf_counter() - t
    assert r.error == category and not r.param_correct
    assert r.tool_correct == (paper_tool if scoring == "paper" else category != "invalid_format")
    assert took < 2.0, f"{name}: {took:.2f} s"  # bounded work (was 91-111 s for the braces, or a RecursionError)


def test_hostile_backtracking_cases_score_fast(entry) -> None:
    """Inputs on which the reference regex backtracks cubically (~7 s at 5,000 characters, ~110 s at 10,000)."""
    cases = ['{"tool_name": "x", "parameters": {' * 3000, "{" + '"tool_name": "x", "parameters": {' * 3000,
             '{"tool_name": "' + '", "parameters": {' * 10_000, '{"a":[' * 20_000 + GOOD]
    for text in cases:
        for scoring in SCORINGS:
            t = time.perf_counter()
            score_response(entry, text, scoring)
            assert time.perf_counter() - t < 2.0


def test_the_bounds_do_not_change_ordinary_responses(entry) -> None:
    deep_ok = {"tool_name": GT, "parameters": {"city": "Paris", "x": [[["a"]]]}}
    for text in (GOOD, "Sure!\n```json\n" + json.dumps(CALL, indent=2) + "\n```", "{" * 100 + GOOD,
                 " " * (MAX_SCAN_CHARS - len(GOOD)) + GOOD, json.dumps(deep_ok)):
        assert parse_robust(text) is not None
    assert score_response(entry, "{" * 100 + GOOD, "robust").error == "correct"
    huge = '{"tool_name": "%s", "parameters": {"city": %s}}' % (GT, "9" * 400)  # beyond float range: no overflow
    assert score_response(entry, huge, "robust").error == "param_value_mismatch"


def test_paper_span_is_the_reference_regex() -> None:
    """The linear search returns exactly ``PAPER_PATTERN.search`` (random texts built from the pattern's parts)."""
    parts = ['{', '}', '}}', '"tool_name":', '"parameters":', '",', '"', ' ', '\n', 'x', ':', '\t', '\xa0', '\r\n',
             GOOD, '{"tool_name": "', '", "parameters": {', '"tool_name":\n"', '",\n"parameters":\n{', '}}}']
    rng = random.Random(0)
    for _ in range(20_000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 24)))
        m = PAPER_PATTERN.search(text)
        assert paper_span(text) == (m.span() if m else None), repr(text)
    assert parse_paper("Sure: " + GOOD + " ok") is not None


def test_evaluate_counts_hostile_rows_in_the_denominator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    test = small_test_set(tmp_path, 4)
    rows = perfect_rows([1, 2, 3, 4], ("preferred",))
    for row, name in zip(rows[1:], ("5000-digit number", "1000 nested objects", "500,000 braces before a call")):
        row["response"] = HOSTILE[name][0]
    preds = write_rows(tmp_path / "p.jsonl", rows)
    for scoring in SCORINGS:
        t = time.perf_counter()
        rc = evaluate_main(["--test", str(test), "--predictions", str(preds), "--setting", "p", "--json",
                            "--scoring", scoring])
        out, err = capsys.readouterr()
        assert rc == 0 and err == "" and time.perf_counter() - t < 5.0
        s = json.loads(out)["preferred"]
        assert (s["n"], s["tool_correct"], s["param_correct"], s["errors"]["invalid_format"]) == (4, 1, 1, 3)
