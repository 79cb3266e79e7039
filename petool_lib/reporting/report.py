"""Result tables (ours beside the paper's published numbers) and the README results block, from ``metrics.json``.

``metrics.json`` layout written by notebook 05: ``evaluation[<testset>][<name>][<scoring>] = {setting: summary}``
and ``evaluation_files[<testset>][<name>] = <prediction file>``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.data import ALL_SETTINGS, NO_HISTORY
from ..harness.evaluate import wilson_interval
from ..core.runs import read_metrics

# Xu et al. 2025 (arXiv 2502.18980), rating-integrated setting: (Tool Acc, Param Acc) in percent.
PUBLISHED_RATINGS: dict[str, tuple[float, float]] = {
    "Vicuna-7B": (10.8, 57.4),
    "Mistral-7B": (15.4, 63.2),
    "Qwen2.5-7B": (24.8, 66.5),
    "LLaMA3-8B": (26.9, 77.7),
    "GPT-4o-mini": (38.4, 77.7),
    "GPT-4o": (45.7, 79.6),
    "PEToolLLaMA": (78.4, 89.7),
}
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
SETTING_LABEL = {"preferred": "Preferred-only", "ratings": "Rating-integrated", "chronological": "Chronological",
                 NO_HISTORY: "No history"}


def record_evaluation(metrics: dict[str, Any], testset: str, name: str, scoring: str,
                      summary: dict[str, Any], file: str | None = None) -> None:
    """Put one evaluation into a metrics dict (``evaluation`` / ``evaluation_files`` sections)."""
    metrics.setdefault("evaluation", {}).setdefault(testset, {}).setdefault(name, {})[scoring] = summary
    if file is not None:
        metrics.setdefault("evaluation_files", {}).setdefault(testset, {})[name] = file


def results_table(evaluation: dict[str, Any], scoring: str = "paper") -> pd.DataFrame:
    """One row per method: Tool Acc (%) with its 95% Wilson interval and Param Acc (%) per setting (the no-history
    ablation too when present), and n, from ``evaluation[<testset>]``."""
    rows = []
    for name, by_scoring in evaluation.items():
        summary = by_scoring.get(scoring)
        if not summary:
            continue
        row: dict[str, Any] = {"method": name}
        for s in ALL_SETTINGS:
            if s in summary:
                v = summary[s]
                lo, hi = v.get("tool_ci95") or wilson_interval(v["tool_correct"], v["n"])
                row[f"{SETTING_LABEL[s]} Tool"] = round(100 * v["tool_acc"], 1)
                row[f"{SETTING_LABEL[s]} Tool 95% CI"] = f"{100 * lo:.1f}–{100 * hi:.1f}"
                row[f"{SETTING_LABEL[s]} Param"] = round(100 * v["param_acc"], 1)
        row["n per setting"] = max((v["n"] for v in summary.values()), default=0)
        rows.append(row)
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


def _paired(evaluation: dict[str, Any], first: str, second: str, scoring: str
            ) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(method, its per-setting summaries on test set ``first``, on ``second``) for every method recorded on both,
    in ``first``'s order."""
    one, two = evaluation.get(first, {}), evaluation.get(second, {})
    return [(n, one[n].get(scoring) or {}, two[n].get(scoring) or {}) for n in one if n in two]


def transfer_gap(evaluation: dict[str, Any], scoring: str = "paper", synthesized: str = "synthesized",
                 official: str = "official") -> pd.DataFrame:
    """The transfer gap of every method scored on both test sets: Tool and Param Acc (points) on the synthesized
    split minus on the official test set, per setting, with both n. A large positive gap = the synthesized data is
    easier than (or unlike) the official data; the gap's own uncertainty is that of both accuracies."""
    rows = []
    for name, b, a in _paired(evaluation, official, synthesized, scoring):
        row: dict[str, Any] = {"method": name}
        for s in ALL_SETTINGS:
            if s in a and s in b:
                row[f"{SETTING_LABEL[s]} Tool gap"] = round(100 * (a[s]["tool_acc"] - b[s]["tool_acc"]), 1)
                row[f"{SETTING_LABEL[s]} Param gap"] = round(100 * (a[s]["param_acc"] - b[s]["param_acc"]), 1)
        if len(row) > 1:
            row["n synthesized / official"] = (f"{max(v['n'] for v in a.values())} / "
                                                f"{max(v['n'] for v in b.values())}")
            rows.append(row)
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(rows).set_index("method")
    n_col = "n synthesized / official"
    return df[[c for c in df.columns if c != n_col] + [n_col]]  # the count last, whatever the settings present


def rename_gap(evaluation: dict[str, Any], scoring: str = "paper", testset: str = "official",
               suffix: str = "-renamed") -> pd.DataFrame:
    """The provider-renaming probe side by side: Tool Acc (%) of every method on ``testset`` and on its renamed copy,
    per setting, and the change in points (renamed minus original). A model that reads the history keeps its
    accuracy; one that memorised providers loses it."""
    rows = []
    for name, b, a in _paired(evaluation, testset + suffix, testset, scoring):
        row: dict[str, Any] = {"method": name}
        for s in ALL_SETTINGS:
            if s in a and s in b:
                row[f"{SETTING_LABEL[s]} Tool"] = round(100 * a[s]["tool_acc"], 1)
                row[f"{SETTING_LABEL[s]} Tool renamed"] = round(100 * b[s]["tool_acc"], 1)
                row[f"{SETTING_LABEL[s]} change"] = round(100 * (b[s]["tool_acc"] - a[s]["tool_acc"]), 1)
        if len(row) > 1:
            row["n per setting"] = max(v["n"] for v in b.values())
            rows.append(row)
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


def published_table() -> pd.DataFrame:
    """The paper's rating-integrated numbers, in the same columns as :func:`results_table`."""
    return pd.DataFrame(
        [{"method": f"{k} (paper)", "Rating-integrated Tool": t, "Rating-integrated Param": p}
         for k, (t, p) in PUBLISHED_RATINGS.items()]
    ).set_index("method")


def _markdown(df: pd.DataFrame) -> str:
    cols = ["method", *map(str, df.columns)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    def cell(col: str, v: Any) -> str:
        if pd.isna(v):
            return ""
        if col.startswith("n ") and isinstance(v, (int, float)) and float(v).is_integer():
            return str(int(v))  # counts stay integers after the concat with the (NaN) published rows
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    for idx, row in df.iterrows():
        cells = [cell(str(c), v) for c, v in zip(df.columns, row.tolist())]
        lines.append("| " + " | ".join([str(idx), *cells]) + " |")
    return "\n".join(lines)


def readme_block(run_dir: str | Path, scoring: str = "paper") -> str:
    """Markdown results block for the README, generated from ``<run>/metrics.json``."""
    metrics = read_metrics(run_dir)
    evaluation = metrics.get("evaluation", {})
    parts = [f"Generated from `{Path(run_dir).name}/metrics.json` ({scoring} scoring; accuracies in %)."]
    for testset, ev in evaluation.items():
        df = results_table(ev, scoring)
        if df.empty:
            continue
        if testset == "official":
            df = pd.concat([df, published_table()])
        parts.append(f"\n**Test set: {testset}**\n\n" + _markdown(df))
    probe = rename_gap(evaluation, scoring)
    if not probe.empty:
        parts.append("\n**Provider-renaming probe** (official entries with every provider renamed within the entry "
                     "and the candidates shuffled; Tool Acc in %, change in points)\n\n" + _markdown(probe))
    gap = transfer_gap(evaluation, scoring)
    if not gap.empty:
        parts.append("\n**Transfer gap** (synthesized minus official, points; the same model on both test sets)\n\n"
                     + _markdown(gap))
    return "\n".join(parts)


def update_readme(run_dir: str | Path, readme: str | Path, scoring: str = "paper") -> bool:
    """Replace the block between the README's results markers; False when the markers are missing."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return False
    block = f"{README_START}\n{readme_block(run_dir, scoring)}\n{README_END}"
    new = re.sub(re.escape(README_START) + r".*?" + re.escape(README_END), lambda _: block, text, flags=re.S)
    path.write_text(new, encoding="utf-8")
    return True
