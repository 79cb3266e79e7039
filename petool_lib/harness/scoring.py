"""Scoring one model response against one entry: the paper's exact rule, a robust rule, and the error taxonomy."""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from ..core.data import Entry

# The reference evaluation's pattern, searched without DOTALL. Its backtracking is cubic on hostile text, so
# :func:`paper_span` finds the same match in near-linear time; this pattern is the specification it is tested against.
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
# Both scorings read only the first MAX_SCAN_CHARS characters of a response (generated calls are a few hundred;
# the longest response in our runs is ~1,000): a call that starts later is not found (invalid_format). This bounds
# the work on a hostile response: the robust scan tries each ``{"`` once, on a slice of at most this length.
MAX_SCAN_CHARS = 20_000
# A parsed call nested deeper than this (objects and lists) is not a call (invalid_format); JSON nested beyond
# Python's recursion limit is unparsable anyway. Keeps every later comparison shallow.
MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class Call:
    tool_name: str
    parameters: Any


_WS = re.compile(r"\s*")
_TOOL_KEY = '"tool_name":'
_PARAMS_KEY = '"parameters":'
_OBJECT_START = re.compile(r'\{\s*"')  # where an object with at least one key can start
_DECODER = json.JSONDecoder()


def _positions(text: str, needle: str) -> list[int]:
    """Every start of ``needle`` in ``text``, overlapping ones included, ascending."""
    out, i = [], text.find(needle)
    while i != -1:
        out.append(i)
        i = text.find(needle, i + 1)
    return out


class _Lines:
    """Newline positions of a text, for "same line" questions in O(log n)."""

    def __init__(self, text: str) -> None:
        self.n = len(text)
        self.newlines = _positions(text, "\n")

    def end(self, i: int) -> int:
        """The first newline at or after ``i`` (the text's length when none)."""
        k = bisect_left(self.newlines, i)
        return self.newlines[k] if k < len(self.newlines) else self.n

    def start(self, i: int) -> int:
        """The first position of ``i``'s line."""
        k = bisect_left(self.newlines, i)
        return self.newlines[k - 1] + 1 if k else 0


def _params_tail_end(text: str, b: int, lines: _Lines, braces: list[int]) -> int | None:
    r"""End of ``",\s*"parameters":\s*\{.*?\}\}`` matched at ``b``, or None. Deterministic: each ``\s*`` is
    followed by a non-space literal, and ``.*?\}\}`` ends at the first ``}}`` unless a newline comes first."""
    if not text.startswith('",', b):
        return None
    w = _WS.match(text, b + 2).end()
    if not text.startswith(_PARAMS_KEY, w):
        return None
    c = _WS.match(text, w + len(_PARAMS_KEY)).end()
    if not text.startswith("{", c):
        return None
    k = bisect_left(braces, c + 1)
    if k == len(braces) or braces[k] > lines.end(c + 1):
        return None
    return braces[k] + 2


def paper_span(text: str) -> tuple[int, int] | None:
    r"""``PAPER_PATTERN.search(text).span()`` (None when no match), computed without backtracking.

    The pattern is ``\{`` + ``.*`` + TAIL, TAIL = ``"tool_name":\s*".*?",\s*"parameters":\s*\{.*?\}\}``, and
    ``.`` stops at newlines. Where TAIL matches does not depend on the start, so: find every ``"tool_name":``
    where TAIL matches (its end is fixed by the first ``",`` after the value's opening quote, on that line, where
    the rest matches); the match starts at the first ``{`` of the first line holding such a TAIL after a ``{``,
    and takes that line's last such TAIL (greedy ``.*``).
    """
    lines = _Lines(text)
    braces = _positions(text, "}}")
    tails = {b: e for b in _positions(text, '",') if (e := _params_tail_end(text, b, lines, braces)) is not None}
    good = sorted(tails)
    last_on_line: dict[int, tuple[int, int]] = {}  # line start -> (last TAIL start on it, its end)
    for q in _positions(text, _TOOL_KEY):
        a = _WS.match(text, q + len(_TOOL_KEY)).end()
        if not text.startswith('"', a):
            continue
        k = bisect_left(good, a + 1)  # the lazy value ``.*?`` stops at the first ``",`` whose rest matches...
        if k == len(good) or good[k] > lines.end(a + 1):  # ...and cannot cross a newline
            continue
        last_on_line[lines.start(q)] = (q, tails[good[k]])
    for line_start in sorted(last_on_line):
        q, end = last_on_line[line_start]
        p = text.find("{", line_start, q)
        if p != -1:
            return p, end
    return None


def _too_deep(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether objects/lists nest deeper than ``limit`` (iterative: safe on any depth)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


def _loads(text: str) -> Any:
    """``json.loads``, or None for anything it refuses: invalid JSON, a number over Python's digit limit (a
    ``ValueError``), nesting beyond the recursion limit (a ``RecursionError``)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def parse_paper(response: str | None) -> Call | None:
    """The reference parse: regex search, ``json.loads`` of the match; None when that fails.

    Reads the first MAX_SCAN_CHARS characters; the search is :func:`paper_span` (the regex's match, linear time).
    """
    if not response:
        return None
    text = response[:MAX_SCAN_CHARS]
    span = paper_span(text)
    if span is None:
        return None
    obj = _loads(text[span[0]:span[1]])
    if not isinstance(obj, dict) or "tool_name" not in obj:
        return None
    return Call(obj.get("tool_name"), obj.get("parameters"))


def _params_value(params: Any) -> Any:
    """``parameters`` as given; a JSON string is parsed (kept as the string when it is not JSON or nests too deep)."""
    if not isinstance(params, str):
        return params
    try:
        parsed = json.loads(params)
    except (ValueError, RecursionError):
        return params
    return params if _too_deep(parsed) else parsed


def _as_call(obj: Any) -> Call | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("tool_name"), str) or _too_deep(obj):
        return None
    return Call(obj["tool_name"].strip(), _params_value(obj.get("parameters", {})))


def _decode_at(text: str, pos: int) -> Any:
    """The JSON value starting at ``pos``, or None. Decoded from a slice: a failure's error position (whose line
    number ``json`` counts from the start of its input) then costs the slice only, not the whole text again."""
    try:
        return _DECODER.raw_decode(text[pos:])[0]
    except (ValueError, RecursionError):
        return None


def parse_robust(response: str | None) -> Call | None:
    """The first JSON object holding ``tool_name`` (top level, in text order) anywhere in the response.

    Handles prose around it, code fences, multi-line JSON and any key order; ``parameters`` may be a JSON string.
    Truncated or invalid JSON is never repaired. Reads the first MAX_SCAN_CHARS characters and tries each
    ``{"`` (the only starts of an object with a key) once; over-long numbers and nesting over MAX_JSON_DEPTH
    make an object unparsable, never an error.
    """
    if not response:
        return None
    text = response[:MAX_SCAN_CHARS]
    for m in _OBJECT_START.finditer(text):
        call = _as_call(_decode_at(text, m.start()))
        if call is not None:
            return call
    return None


def _norm(value: Any) -> Any:
    """Normal form for robust comparison: numbers and numeric strings as floats, strings trimmed and casefolded."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range (JSON allows up to 4,300 digits): compared exactly
            return value
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
