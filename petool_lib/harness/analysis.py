"""Error analysis over scored prediction files: per-method scored records, slices and the worst examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.data import Entry
from .evaluate import load_predictions, score_rows, slices
from ..core.prompts import parse_prompt

SEVERITY = {"missing": 0, "invalid_format": 1, "tool_hallucination": 2, "functionality_mismatch": 3,
            "preference_mismatch": 4, "param_name_mismatch": 5, "param_value_mismatch": 6, "correct": 7}


def score_files(files: dict[str, str | Path], entries: list[Entry], scoring: str = "paper") -> dict[str, list[dict[str, Any]]]:
    """Scored records per method name, from ``{name: prediction file}``, restricted to ``entries``.

    Files may hold predictions for more entries than ``entries`` (rows of other ids are set aside); the
    denominator is always ``entries``, so a missing row counts as wrong.
    """
    return {name: score_rows(entries, load_predictions(path, entries, subset=True), scoring=scoring)
            for name, path in files.items()}


def slices_by_method(scored: dict[str, list[dict[str, Any]]], key: str) -> dict[str, dict[str, dict[str, Any]]]:
    return {name: slices(recs, key) for name, recs in scored.items()}


def worst_examples(scored: dict[str, list[dict[str, Any]]], entries: list[Entry], n: int = 5) -> pd.DataFrame:
    """The (entry, setting) pairs most methods get wrong, most severe errors first, shown readably."""
    by_key: dict[tuple[int, str], list[tuple[str, dict[str, Any]]]] = {}
    for name, recs in scored.items():
        for r in recs:
            by_key.setdefault((r["entry_id"], r["setting"]), []).append((name, r))
    emap = {e.entry_id: e for e in entries}

    def badness(item: tuple[tuple[int, str], list[tuple[str, dict[str, Any]]]]) -> tuple[int, int]:
        recs = [r for _, r in item[1]]
        return (-sum(not r["tool_correct"] for r in recs), sum(SEVERITY.get(r["error"], 9) for r in recs))

    rows = []
    for (eid, setting), recs in sorted(by_key.items(), key=badness)[:n]:
        e = emap[eid]
        prompt = parse_prompt(e.prompts[setting], setting)
        rows.append({
            "entry_id": eid, "setting": setting, "query": e.query,
            "ground truth": json.dumps(e.ground_truth, ensure_ascii=False),
            "history items": len(prompt.history),
            "group (apis_same_func)": ", ".join(e.group_names),
            **{f"{name}": f"[{r['error']}] {r['response'][:160]}" for name, r in recs},
        })
    return pd.DataFrame(rows)
