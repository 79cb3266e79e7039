"""Evaluate prediction files against the test set: Tool Acc, Param Acc, missing rows, error taxonomy, slices.

CLI::

    python -m petool_lib.harness.evaluate --test PATH --predictions P.jsonl [--setting all] [--scoring paper|robust] [--json]
        [--limit N [--seed S]]

The denominator is always every test entry of the setting — with ``--limit N``, every entry of the seeded subset
``predict --limit N`` used (:func:`~petool_lib.core.data.select_subset`): a missing prediction counts as wrong.

Bad input is a one-line ``error: ...`` and exit 2, naming the file and line: bytes that are not UTF-8, a line that
is not JSON (or holds a number over Python's 4,300-digit limit), a bad or unknown ``entry_id``, a file where no row
has ``response``, an empty test set. A response is model output and never an error: whatever it holds (nesting,
huge numbers, megabytes of braces) it is scored, as ``invalid_format`` when no call can be read
(:mod:`petool_lib.harness.scoring`); a row without ``response`` is scored as wrong, with a warning.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

from ..core.io import JsonlError, read_jsonl_lines, write_jsonl
from ..core.data import (NO_HISTORY, DataError, Entry, load_test_set, normalize_setting, resolve_settings,
                         select_subset)
from .cases import decision_case, pick_kind
from .scoring import ERROR_CATEGORIES, SCORINGS, score_response

HISTORY_BINS: tuple[tuple[int, int], ...] = ((0, 20), (20, 40), (40, 60), (60, 80), (80, 10**9))


class PredictionError(DataError):
    """A prediction file that cannot be scored (bad JSON, unknown id, duplicate row, wrong field type)."""


def _history_bin(n: int) -> str:
    for lo, hi in HISTORY_BINS:
        if lo <= n < hi:
            return f"{lo}-{hi - 1}" if hi < 10**9 else f"{lo}+"
    return "?"


def _require_response_field(rows: list[Any], source: str) -> None:
    """A file where no row has ``response`` is the wrong file or the wrong format, not a model scoring 0%."""
    dicts = [r for r in rows if isinstance(r, dict)]
    if dicts and not any("response" in r for r in dicts):
        keys = sorted({str(k) for r in dicts for k in r})
        shown = ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")
        raise PredictionError(f"{source}: no row has the field 'response' (the rows have: {shown}); a prediction "
                              f"row is {{\"entry_id\": int, \"setting\": str, \"response\": str}}")


def validate_rows(
    rows: Iterable[dict[str, Any]], entries: list[Entry], source: str = "<rows>", lines: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Check prediction rows: known entry ids, a valid setting, a string response, no duplicate (id, setting).

    ``lines``: the file line of each row (errors then name it). A row without ``response`` is scored as wrong
    (marked ``response_missing``); a file where *no* row has it is an error.
    """
    rows = list(rows)
    _require_response_field(rows, source)
    known = {e.entry_id for e in entries}
    seen: set[tuple[int, str]] = set()
    out = []
    for i, row in enumerate(rows, 1):
        where = f"{source}: row {i}" + (f" (line {lines[i - 1]})" if lines else "")
        if not isinstance(row, dict):
            raise PredictionError(f"{where}: expected an object, got {type(row).__name__}")
        eid = row.get("entry_id")
        if not isinstance(eid, int) or isinstance(eid, bool):
            raise PredictionError(f"{where}: field 'entry_id' must be an integer, got {_short(eid)}")
        if eid not in known:
            raise PredictionError(f"{where}: entry_id {_short(eid)} is not in the test set")
        try:
            setting = normalize_setting(row.get("setting", ""))
        except ValueError as exc:
            raise PredictionError(f"{where} (entry {eid}): field 'setting': {exc}") from exc
        resp = row.get("response")
        if resp is not None and not isinstance(resp, str):
            raise PredictionError(f"{where} (entry {eid}): field 'response' must be a string or null, got "
                                  f"{type(resp).__name__}")
        if (eid, setting) in seen:
            raise PredictionError(f"{where}: duplicate prediction for entry {eid}, setting {setting}")
        seen.add((eid, setting))
        extra = {} if "response" in row else {"response_missing": True}
        out.append({**row, "setting": setting, "response": resp or "", **extra})
    return out


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters (a hostile value is named, not echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def load_predictions(path: str | Path, entries: list[Entry], subset: bool = False) -> list[dict[str, Any]]:
    """Read and validate a JSONL prediction file. With ``subset=True`` rows of entries outside ``entries`` are
    set aside (scoring a file on a chosen subset); otherwise an unknown entry id is an error. Every error names
    the file and the line (bytes that are not UTF-8, a line that is not JSON, a number over Python's digit limit,
    a bad field); a file where no row has ``response`` is an error."""
    try:
        numbered = read_jsonl_lines(path)
    except JsonlError as exc:
        raise PredictionError(str(exc)) from exc
    if subset:
        ids = {e.entry_id for e in entries}
        numbered = [(n, r) for n, r in numbered if not isinstance(r, dict) or r.get("entry_id") in ids]
    return validate_rows([r for _, r in numbered], entries, str(path), [n for n, _ in numbered])


def write_predictions(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write prediction rows as JSONL (UTF-8, one object per line, atomically)."""
    return write_jsonl(path, rows)


def score_rows(
    entries: list[Entry], rows: list[dict[str, Any]], settings: list[str] | None = None, scoring: str = "paper"
) -> list[dict[str, Any]]:
    """One scored record per (entry, setting) of the test set, with missing predictions as wrong rows."""
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; expected one of {SCORINGS}")
    by_key = {(r["entry_id"], normalize_setting(r["setting"])): r for r in rows}
    if not settings:  # the three paper settings, plus the no-history ablation when the rows hold it
        settings = resolve_settings("all") + ([NO_HISTORY] if any(s == NO_HISTORY for _, s in by_key) else [])
    out = []
    for s in settings:
        for e in entries:
            row = by_key.get((e.entry_id, s))
            resp = row.get("response") if row else None
            sc = score_response(e, resp, scoring)
            out.append({
                "entry_id": e.entry_id, "setting": s, "missing": row is None, "response": resp or "",
                "tool_correct": sc.tool_correct, "param_correct": sc.param_correct,
                "error": "missing" if row is None else sc.error, "predicted_tool": sc.predicted_tool,
                "ground_truth": e.ground_truth["tool_name"], "category": e.category,
                "history_bin": _history_bin(e.history_length), "group_size": len(e.same_func),
            })
    return out


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (``(0, 1)`` when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(recs)
    tc = sum(r["tool_correct"] for r in recs)
    pc = sum(r["param_correct"] for r in recs)
    errors = Counter(r["error"] for r in recs)
    return {
        "n": n, "tool_correct": tc, "param_correct": pc,
        "tool_acc": tc / n if n else 0.0, "param_acc": pc / n if n else 0.0,
        "tool_ci95": list(wilson_interval(tc, n)), "param_ci95": list(wilson_interval(pc, n)),
        "missing": sum(r["missing"] for r in recs),
        "errors": {k: errors.get(k, 0) for k in (*ERROR_CATEGORIES, "missing")},
    }


def summarize(scored: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-setting summary {n, tool_correct, param_correct, tool_acc, param_acc, missing, errors}."""
    by_setting: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in scored:
        by_setting[r["setting"]].append(r)
    return {s: _summary(recs) for s, recs in by_setting.items()}


def slices(scored: list[dict[str, Any]], key: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Accuracy by a slice key (``history_bin``, ``category``, ``group_size``) per setting."""
    groups: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in scored:
        groups[r["setting"]][str(r[key])].append(r)
    return {s: {k: _summary(v) for k, v in sorted(g.items())} for s, g in groups.items()}


SLICE_KEYS: tuple[str, ...] = ("case", "pick", "history_bin", "category", "group_size")


def add_decision_cases(scored: list[dict[str, Any]], entries: list[Entry]) -> list[dict[str, Any]]:
    """``scored`` with ``case``: the :func:`harness.cases.decision_case` of each (entry, setting) — what the history
    shows about the wanted provider (``absent`` / ``visible`` / ``switch`` / ``avoid``); ``no history`` for the
    no-history ablation."""
    by_id = {e.entry_id: e for e in entries}
    return [dict(r, case="no history" if r["setting"] == NO_HISTORY else decision_case(by_id[r["entry_id"]],
                                                                                           r["setting"]))
            for r in scored]


def add_picks(scored: list[dict[str, Any]], entries: list[Entry]) -> list[dict[str, Any]]:
    """``scored`` with ``pick``: the :func:`harness.cases.pick_kind` of each prediction — the answer, a group member
    whose provider the history shows (rated 0 / older), one it does not show, another function, or no tool."""
    by_id = {e.entry_id: e for e in entries}
    return [dict(r, pick=pick_kind(by_id[r["entry_id"]], r["setting"], r["predicted_tool"])) for r in scored]


def evaluate_rows(
    entries: list[Entry], rows: list[dict[str, Any]], settings: list[str] | None = None, scoring: str = "paper"
) -> dict[str, dict[str, Any]]:
    """Validate rows, score them and summarise per setting (the ``--json`` output of the CLI)."""
    rows = validate_rows(rows, entries)
    return summarize(score_rows(entries, rows, settings, scoring))


def ci_text(summary: dict[str, Any], key: str) -> str:
    """``"[lo, hi]"`` in percent of a summary's ``<key>_ci95`` (``key`` = tool | param; computed when absent)."""
    ci = summary.get(f"{key}_ci95") or wilson_interval(summary[f"{key}_correct"], summary["n"])
    return "[{:.1f}, {:.1f}]".format(*(100 * x for x in ci))


def format_table(summary: dict[str, dict[str, Any]], title: str = "", label: str = "setting") -> str:
    """A readable fixed-width table of a per-setting summary (``label``: the first column's header)."""
    cats = [c for c in ERROR_CATEGORIES if any(v["errors"].get(c) for v in summary.values())]  # "missing" has its column
    head = (f"{label:<14}{'n':>6}{'Tool Acc':>10}{'(95% CI)':>15}{'Param Acc':>11}{'(95% CI)':>15}{'missing':>9}  "
            + "  ".join(cats))
    lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
    for s, v in summary.items():
        errs = "  ".join(f"{v['errors'].get(c, 0):>{len(c)}}" for c in cats)
        ci = {k: ci_text(v, k) for k in ("tool", "param")}
        lines.append(f"{s:<14}{v['n']:>6}{100 * v['tool_acc']:>9.1f}%{ci['tool']:>15}{100 * v['param_acc']:>10.1f}%"
                     f"{ci['param']:>15}{v['missing']:>9}  {errs}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m petool_lib.harness.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--test", default=None, help="test file or directory (default: PETOOLBENCH_DIR / ../shared)")
    ap.add_argument("--predictions", required=True, help="JSONL prediction file")
    ap.add_argument("--setting", default="all",
                    help="all | preferred | ratings | chronological | none (no-history ablation), or p/r/c/n; comma list")
    ap.add_argument("--scoring", default="paper", choices=SCORINGS)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--limit", type=int, default=None,
                    help="score on the seeded subset of N entries per setting that `predict --limit N` used (missing "
                         "predictions of the subset still count as wrong; rows outside it are set aside, with a "
                         "warning)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --limit subset (as given to predict)")
    ap.add_argument("--by", default=None, choices=SLICE_KEYS,
                    help="also accuracy per slice and setting: case (what the history shows: absent / visible / "
                         "switch / avoid), pick (what was picked: the answer, a group member the history shows, "
                         "one it does not show, another function), history_bin, category or group_size")
    args = ap.parse_args(argv)
    try:
        entries = load_test_set(args.test)
        if args.limit is not None:
            entries = select_subset(entries, args.limit, args.seed)
        rows = load_predictions(args.predictions, entries, subset=args.limit is not None)
        outside = len(read_jsonl_lines(args.predictions)) - len(rows) if args.limit is not None else 0
        settings = None if args.setting.strip().lower() == "all" else resolve_settings(args.setting)
        scored = score_rows(entries, rows, settings, args.scoring)
        summary = summarize(scored)
        if args.by == "case":
            scored = add_decision_cases(scored, entries)
        elif args.by == "pick":
            scored = add_picks(scored, entries)
        by = slices(scored, args.by) if args.by else None
    except (DataError, OSError, ValueError) as exc:  # bad input (file and line named), unreadable file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if outside:
        print(f"warning: {args.predictions}: {outside} row(s) are outside the --limit {args.limit} subset (seed "
              f"{args.seed}) and were set aside", file=sys.stderr)
    no_response = sum(1 for r in rows if r.get("response_missing"))
    if no_response:
        print(f"warning: {args.predictions}: {no_response} row(s) have no 'response' field; scored as wrong",
              file=sys.stderr)
    if args.json:
        print(json.dumps({**summary, f"by_{args.by}": by} if by else summary, sort_keys=True))
    else:
        print(format_table(summary, f"{args.predictions} ({args.scoring} scoring)"))
        for s, table in (by or {}).items():
            print("\n" + format_table(table, f"{s} by {args.by}", label=args.by))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
