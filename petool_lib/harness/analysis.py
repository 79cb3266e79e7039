"""Error analysis over scored prediction files: per-method scored records, slices and the worst examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.context import evidence_items
from ..core.data import Entry
from ..core.io import read_jsonl
from ..core.prompts import parse_prompt
from .cases import PICKS
from .evaluate import add_picks, load_predictions, score_rows, slices

SEVERITY = {"missing": 0, "invalid_format": 1, "tool_hallucination": 2, "functionality_mismatch": 3,
            "preference_mismatch": 4, "param_name_mismatch": 5, "param_value_mismatch": 6, "correct": 7}


def score_files(files: dict[str, str | Path], entries: list[Entry], scoring: str = "paper") -> dict[str, list[dict[str, Any]]]:
    """Scored records per method name, from ``{name: prediction file}``, restricted to ``entries``.

    Files may hold predictions for more entries than ``entries`` (rows of other ids are set aside); the
    denominator is always ``entries``, so a missing row counts as wrong.
    """
    return {name: score_rows(entries, load_predictions(path, entries, subset=True), scoring=scoring)
            for name, path in files.items()}


def covered_entries(path: str | Path, entries: list[Entry]) -> list[Entry]:
    """The entries (in test-set order) that a prediction file has at least one row for."""
    ids = {r.get("entry_id") for r in read_jsonl(path) if isinstance(r, dict)}
    return [e for e in entries if e.entry_id in ids]


def score_run_files(files: dict[str, dict[str, str]], test_sets: dict[str, list[Entry]], scoring: str = "paper"
                    ) -> dict[tuple[str, str], tuple[list[Entry], list[dict[str, Any]]]]:
    """``{(testset, name): (entries, scored records)}`` for a run's ``{testset: {name: prediction file}}``.

    Each method is scored on the entries its file covers (the subset notebook 05 evaluated it on); within that
    subset a missing row still counts as wrong.
    """
    out = {}
    for testset, by_name in files.items():
        if testset not in test_sets:
            raise KeyError(f"prediction files for test set {testset!r}, but no such test set: {sorted(test_sets)}")
        for name, path in by_name.items():
            subset = covered_entries(path, test_sets[testset])
            out[(testset, name)] = (subset, score_files({name: path}, subset, scoring)[name])
    return out


def common_entries(scored: dict[tuple[str, str], tuple[list[Entry], list[dict[str, Any]]]], testset: str,
                   names: list[str] | None = None) -> list[Entry]:
    """The entries of ``testset`` that every named method (default: all) was scored on, in test-set order."""
    keys = [k for k in scored if k[0] == testset and (names is None or k[1] in names)]
    if not keys:
        return []
    ids = set.intersection(*({e.entry_id for e in scored[k][0]} for k in keys))
    return [e for e in scored[keys[0]][0] if e.entry_id in ids]


def accuracy_cells(summaries: dict[str, dict[str, dict[str, Any]]]) -> pd.DataFrame:
    """A method x setting table of "Tool% / Param%" strings, from ``{name: summarize(...)}``."""
    return pd.DataFrame({n: {s: f"{100 * v['tool_acc']:.0f}% / {100 * v['param_acc']:.0f}%" for s, v in sm.items()}
                         for n, sm in summaries.items()}).T


EVIDENCE_BINS = ("0", "1", "2", "3", "4", "5+")


def evidence_kept(row: dict[str, Any] | None, entry: Entry, setting: str) -> str:
    """How many evidence items (history items whose provider or API name is among the candidates') the model saw,
    as a bin of :data:`EVIDENCE_BINS`: from the row's context report when the prompt was fitted, else those of the
    whole prompt; ``"?"`` for an oldest-first trimmed row (which items survived is not recorded)."""
    ctx = (row or {}).get("context")
    if ctx:
        n = int(ctx["kept_evidence"])
    elif row and row.get("trimmed"):
        return "?"
    else:
        n = len(evidence_items(parse_prompt(entry.prompt(setting), setting)))
    return str(n) if n < 5 else "5+"


def with_evidence_kept(scored: list[dict[str, Any]], path: str | Path, entries: list[Entry]) -> list[dict[str, Any]]:
    """``scored`` records (of the file at ``path``) with an ``evidence_kept`` slice key (:func:`evidence_kept`)."""
    rows = {(r["entry_id"], r["setting"]): r for r in read_jsonl(path) if isinstance(r, dict)}
    emap = {e.entry_id: e for e in entries}
    return [{**rec, "evidence_kept": evidence_kept(rows.get((rec["entry_id"], rec["setting"])),
                                                   emap[rec["entry_id"]], rec["setting"])} for rec in scored]


def pick_counts(scored: dict[str, list[dict[str, Any]]], entries: list[Entry]
                ) -> dict[str, dict[str, dict[str, int]]]:
    """``{method: {setting: {pick: count}}}``: what each method's predictions picked, seen from the history
    (:data:`harness.cases.PICKS`, zeros included, in that order). ``scored`` are records of ``entries`` (e.g. from
    :func:`score_files`); a missing row counts as ``no tool``, so the counts of a setting add up to its records."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for name, recs in scored.items():
        by_setting: dict[str, dict[str, int]] = {}
        for r in add_picks(recs, entries):
            by_setting.setdefault(r["setting"], dict.fromkeys(PICKS, 0))[r["pick"]] += 1
        out[name] = by_setting
    return out


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
        prompt = parse_prompt(e.prompt(setting), setting)
        rows.append({
            "entry_id": eid, "setting": setting, "query": e.query,
            "ground truth": json.dumps(e.ground_truth, ensure_ascii=False),
            "history items": len(prompt.history),
            "group (apis_same_func)": ", ".join(e.group_names),
            **{f"{name}": f"[{r['error']}] {r['response'][:160]}" for name, r in recs},
        })
    return pd.DataFrame(rows)
