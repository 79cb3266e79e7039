"""Figures for the synthesis notebooks (01-02): group sizes, category coverage, history lengths per setting and
preference consistency, saved as PNG."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Sequence

from ..core.figures import save_figure  # first: selects the headless matplotlib backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..core.data import SETTINGS, Entry  # noqa: E402
from ..core.prompts import parse_prompt  # noqa: E402


def _shares(dist: dict[str, int]) -> dict[int, float]:
    total = sum(dist.values()) or 1
    return {int(k): v / total for k, v in dist.items()}


def group_sizes(synth: dict[str, int], path: str | Path, official: dict[str, int] | None = None) -> Path:
    """Share of functional groups per size (synthesized groups; official test entries' groups when given)."""
    s = _shares(synth)
    sizes = sorted(set(s) | set(_shares(official or {})))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    w = 0.4 if official else 0.8
    ax.bar(np.array(sizes) - (w / 2 if official else 0), [s.get(k, 0) for k in sizes], width=w,
           label=f"synthesized ({sum(synth.values())} groups)")
    if official:
        o = _shares(official)
        ax.bar(np.array(sizes) + w / 2, [o.get(k, 0) for k in sizes], width=w,
               label=f"official test ({sum(official.values())} entries)")
    ax.set_xlabel("group size (providers doing the same job)")
    ax.set_ylabel("share")
    ax.set_xticks(sizes)
    ax.legend()
    ax.set_title("Functional group sizes")
    return save_figure(fig, path)


def category_coverage(tools: Sequence[dict[str, Any]], groups: Sequence[dict[str, Any]], path: str | Path, top: int = 30) -> Path:
    """APIs per category and how many of them are in a functional group (top categories by APIs)."""
    apis = Counter(t["category"] for t in tools if t.get("documented", True))
    grouped = Counter()
    for g in groups:
        for m in g["members"]:
            grouped[m[1:].split(">.<")[0]] += 1
    cats = [c for c, _ in apis.most_common(top)]
    fig, ax = plt.subplots(figsize=(7, max(3, 0.25 * len(cats) + 1)))
    y = np.arange(len(cats))
    ax.barh(y, [apis[c] for c in cats], label="documented APIs", color="#c7c7c7")
    ax.barh(y, [grouped[c] for c in cats], label="in a functional group", color="#1f77b4")
    ax.set_yticks(y)
    ax.set_yticklabels(cats, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("APIs")
    ax.legend(fontsize=8)
    ax.set_title(f"Category coverage ({len(apis)} categories)")
    return save_figure(fig, path)


def history_lengths(sets: dict[str, Sequence[Entry]], path: str | Path) -> Path:
    """Per setting, the distribution of prompt history items; and the full history length, for each entry set."""
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
    for name, entries in sets.items():
        for ax, s in zip(axes[:3], SETTINGS):
            n = [len(parse_prompt(e.prompts[s], s).history) for e in entries]
            ax.hist(n, bins=np.arange(0, 22) - 0.5, alpha=0.5, density=True, label=name)
            ax.set_title(f"{s}: items in prompt")
        axes[3].hist([e.history_length for e in entries], bins=np.arange(0, 105, 5), alpha=0.5, density=True, label=name)
    axes[3].set_title("full history length")
    axes[0].set_ylabel("share")
    axes[3].legend(fontsize=8)
    return save_figure(fig, path)


def preference_consistency(users: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Left: share of users whose preferred tool is the noise-free best-aligned provider, by the attribute they weigh
    most. Right: per target group, the share of users choosing the group's most common provider (1 = no
    personalisation)."""
    by_attr: dict[str, list[bool]] = defaultdict(list)
    per_group: dict[str, Counter] = defaultdict(Counter)
    for u in users:
        by_attr[u["top_attribute"]].append(u["preferred_provider"] == u["aligned_provider"])
        per_group[u["target_group"]][u["preferred_provider"]] += 1
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.5))
    attrs = sorted(by_attr)
    a1.bar(attrs, [np.mean(by_attr[a]) for a in attrs])
    a1.set_ylim(0, 1)
    a1.set_ylabel("preferred = best aligned")
    a1.set_title("Preference vs latent attributes")
    a1.tick_params(axis="x", rotation=30, labelsize=8)
    shares = [max(c.values()) / sum(c.values()) for c in per_group.values() if sum(c.values()) >= 2]
    a2.hist(shares, bins=np.linspace(0, 1, 11))
    a2.set_xlabel("share of users choosing the group's most common provider")
    a2.set_ylabel("groups")
    a2.set_title("How personal the choices are")
    return save_figure(fig, path)
