"""Figures for the evaluation notebooks (matplotlib, saved as PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from ..core.data import SETTINGS
from ..core.figures import save_figure
from ..harness.cases import PICKS
from ..harness.scoring import ERROR_CATEGORIES

_COLORS = {
    "correct": "#2ca02c", "param_value_mismatch": "#98df8a", "param_name_mismatch": "#bcbd22",
    "preference_mismatch": "#ff7f0e", "functionality_mismatch": "#d62728", "tool_hallucination": "#9467bd",
    "invalid_format": "#7f7f7f", "missing": "#000000",
}
_PICK_COLORS = {"answer": "#2ca02c", "shown provider": "#ff7f0e", "unshown provider": "#ffbb78",
                "other function": "#d62728", "no tool": "#7f7f7f"}


def _stacked_bars(shares: dict[str, dict[str, dict[str, float]]], parts: list[str], colors: dict[str, str],
                  path: str | Path, title: str) -> Path:
    """Stacked horizontal bars: one panel per setting, one bar per method, ``shares[name][setting][part]`` (a
    fraction of the setting's entries) stacked in the order of ``parts``."""
    names = list(shares)
    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(4.2 * len(SETTINGS), 0.5 * len(names) + 2.2), sharey=True)
    for ax, s in zip(axes, SETTINGS):
        left = [0.0] * len(names)
        for part in parts:
            vals = [shares[n].get(s, {}).get(part, 0.0) for n in names]
            ax.barh(names, vals, left=left, color=colors[part], label=part)
            left = [a + b for a, b in zip(left, vals)]
        ax.set_title(s)
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction of entries")
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    axes[-1].legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def taxonomy_bars(summaries: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Stacked bars of the error taxonomy: one panel per setting, one bar per method (``summaries[name][setting]``)."""
    cats = [*ERROR_CATEGORIES[::-1], "missing"]
    shares = {n: {s: {c: d.get("errors", {}).get(c, 0) / max(d.get("n", 0), 1) for c in cats} for s, d in sm.items()}
              for n, sm in summaries.items()}
    return _stacked_bars(shares, cats, _COLORS, path, title)


def pick_bars(counts: dict[str, dict[str, dict[str, int]]], path: str | Path, title: str = "") -> Path:
    """Stacked bars of what each method picked, seen from the history (``counts[name][setting][pick]``, from
    :func:`harness.analysis.pick_counts`): the answer, the group provider the history shows (rated 0 / older: the
    copy that goes the wrong way), one it does not show, another function, no tool."""
    shares = {n: {s: {p: k / max(sum(c.values()), 1) for p, k in c.items()} for s, c in by.items()}
              for n, by in counts.items()}
    return _stacked_bars(shares, list(PICKS), _PICK_COLORS, path, title)


def slice_series(slices_by_name: dict[str, dict[str, dict[str, Any]]], setting: str, metric: str = "tool_acc"
                 ) -> dict[str, tuple[list[str], list[float]]]:
    """``{method: (slice values, metric)}`` of one setting, leaving out empty slices (n = 0) and methods with no
    rows in that setting (e.g. the no-history ablation outside its own setting)."""
    out: dict[str, tuple[list[str], list[float]]] = {}
    for name, by_setting in slices_by_name.items():
        sl = by_setting.get(setting, {})
        xs = [x for x in sl if sl[x].get("n", 1)]
        if xs:
            out[name] = (xs, [sl[x][metric] for x in xs])
    return out


def slice_lines(slices_by_name: dict[str, dict[str, dict[str, Any]]], path: str | Path, xlabel: str,
                metric: str = "tool_acc", title: str = "") -> Path:
    """Accuracy per slice value (x) for each method, one panel per setting (``slices_by_name[name][setting][value]``)."""
    fig, axes = plt.subplots(1, len(SETTINGS), figsize=(4.2 * len(SETTINGS), 3.4), sharey=True)
    for ax, s in zip(axes, SETTINGS):
        for name, (xs, ys) in slice_series(slices_by_name, s, metric).items():
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_title(s)
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", rotation=45)
    axes[0].set_ylabel(metric.replace("_", " "))
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    axes[-1].legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def category_heatmap(slices_by_name: dict[str, dict[str, dict[str, Any]]], path: str | Path, setting: str,
                     metric: str = "tool_acc") -> Path:
    """Per-category accuracy (columns) for each method (rows) in one setting."""
    names = list(slices_by_name)
    cats = sorted({c for n in names for c in slices_by_name[n].get(setting, {})})
    grid = [[slices_by_name[n].get(setting, {}).get(c, {}).get(metric, float("nan")) for c in cats] for n in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.32 * len(cats) + 3), 0.45 * len(names) + 2))
    im = ax.imshow(grid, aspect="auto", vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(cats)), cats, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names)
    ax.set_title(f"{metric.replace('_', ' ')} by category ({setting})")
    fig.colorbar(im, ax=ax)
    return save_figure(fig, path)
