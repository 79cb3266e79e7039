"""Scoring one model response against one entry: the paper's exact rule, a robust rule, and the error taxonomy."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ..core.data import Entry

# The reference evaluation's pattern, searched without DOTALL.
PAPER_PATTERN = re.compile(r'\{.*"tool_name":\s*".*?",\s*"parameters":\s*\{.*?\}\}')
SCORINGS = ("paper", "robust")
ERROR_CATEGORIES = (
    "invalid_format",
    "tool_hallucination",
    "functionality_mismatch",
    "preference_mismatch",
    "param_name_mismatch",
    "param_value_mismatch",
    "correct",
)


@dataclass(frozen=True)
class Call:
    tool_name: str
    parameters: Any


def parse_paper(response: str | None) -> Call | None:
    """The reference parse: regex search, ``json.loads`` of the match; None when that fails."""
    if not response:
        return None
    m = PAPER_PATTERN.search(response)
    if not m:
        return None
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or "tool_name" not in obj:
        return None
    return Call(obj.get("tool_name"), obj.get("parameters"))


def _as_call(obj: Any) -> Call | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("tool_name"), str):
        return None
    params = obj.get("parameters", {})
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError:
            return Call(obj["tool_name"].strip(), params)
    return Call(obj["tool_name"].strip(), params)


def parse_robust(response: str | None) -> Call | None:
    """The first JSON object holding ``tool_name`` (top level, in text order) anywhere in the response.

    Handles prose around it, code fences, multi-line JSON and any key order; ``parameters`` may be a JSON string.
    Truncated or invalid JSON is never repaired.
    """
    if not response:
        return None
    decoder = json.JSONDecoder()
    pos = response.find("{")
    while pos != -1:
        try:
            obj, _ = decoder.raw_decode(response, pos)
        except json.JSONDecodeError:
            obj = None
        call = _as_call(obj)
        if call is not None:
            return call
        pos = response.find("{", pos + 1)
    return None


def _norm(value: Any) -> Any:
    """Normal form for robust comparison: numbers and numeric strings as floats, strings trimmed and casefolded."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        s = value.strip()
        try:
            f = float(s)
            if math.isfinite(f):
                return f
        except ValueError:
            pass
        return s.casefold()
    if isinstance(value, dict):
        return {str(k): _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def params_equal(pred: Any, truth: dict[str, Any], robust: bool) -> bool:
    if not isinstance(pred, dict):
        return False
    if not robust:
        return pred == truth
    return _norm(pred) == _norm(truth)


@dataclass(frozen=True)
class RowScore:
    tool_correct: bool
    param_correct: bool
    error: str
    predicted_tool: str | None


def classify(entry: Entry, call: Call | None) -> str:
    """Exactly one taxonomy category (robust comparison), checked in the documented order."""
    if call is None:
        return "invalid_format"
    if call.tool_name not in entry.candidate_names:
        return "tool_hallucination"
    if call.tool_name != entry.ground_truth["tool_name"]:
        return "preference_mismatch" if call.tool_name in entry.group_names else "functionality_mismatch"
    truth = entry.ground_truth["parameters"]
    if not isinstance(call.parameters, dict) or set(map(str, call.parameters)) != set(truth):
        return "param_name_mismatch"
    if not params_equal(call.parameters, truth, robust=True):
        return "param_value_mismatch"
    return "correct"


def score_response(entry: Entry, response: str | None, scoring: str = "paper") -> RowScore:
    """Tool and Param correctness under ``scoring`` plus the taxonomy category (always from the robust parse)."""
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; expected one of {SCORINGS}")
    robust_call = parse_robust(response)
    call = robust_call if scoring == "robust" else parse_paper(response)
    truth = entry.ground_truth
    tool_ok = call is not None and call.tool_name == truth["tool_name"]
    param_ok = call is not None and params_equal(call.parameters, truth["parameters"], robust=scoring == "robust")
    return RowScore(bool(tool_ok), bool(param_ok), classify(entry, robust_call), call.tool_name if call else None)
