"""Seen vs unseen APIs: which test ground truths the training data used as targets, and accuracy on each side.

- Official test set: the synthesis manifest's leakage report lists the official ground-truth APIs that training used
  as targets (``leakage.official_gt_apis_as_train_targets``; empty under the strict holdout, where every official
  API is unseen by construction).
- Synthesized test split: the ground-truth tool names of ``<run>/data/sft.jsonl`` completions (the training targets).

Every function reports why it could not tell (missing file or key) instead of failing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..core.data import Entry
from .evaluate import score_rows, summarize

MANIFEST_KEY = ("leakage", "official_gt_apis_as_train_targets")


def seen_apis(run_dir: str | Path) -> tuple[dict[str, set[str]], dict[str, str]]:
    """``({testset: seen API names}, {testset: reason it is unknown})`` for ``official`` and ``synthesized``."""
    data = Path(run_dir) / "data"
    seen: dict[str, set[str]] = {}
    why: dict[str, str] = {}
    manifest = data / "manifest.json"
    if not manifest.is_file():
        why["official"] = f"{manifest} not found (run notebooks 01-02)"
    else:
        node: Any = json.loads(manifest.read_text(encoding="utf-8"))
        for key in MANIFEST_KEY:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, list):
            seen["official"] = {str(x) for x in node}
        else:
            leak = json.loads(manifest.read_text(encoding="utf-8")).get("leakage", {})
            reason = leak.get("reason") if isinstance(leak, dict) else None
            why["official"] = f"manifest has no {'.'.join(MANIFEST_KEY)}" + (f" ({reason})" if reason else "")
    sft = data / "sft.jsonl"
    if not sft.is_file():
        why["synthesized"] = f"{sft} not found"
    else:
        names: set[str] = set()
        with open(sft, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                row = json.loads(line)
                try:
                    names.add(json.loads(row["completion"][0]["content"])["tool_name"])
                except (KeyError, IndexError, TypeError, json.JSONDecodeError):
                    continue
        seen["synthesized"] = names
    return seen, why


def seen_unseen_summary(entries: list[Entry], rows: list[dict[str, Any]], seen: set[str],
                        scoring: str = "paper") -> dict[str, dict[str, Any]]:
    """Tool/Param Acc over all settings for entries whose ground-truth API training saw vs did not see."""
    scored = score_rows(entries, rows, scoring=scoring)
    gt = {e.entry_id: e.ground_truth["tool_name"] for e in entries}
    out: dict[str, dict[str, Any]] = {}
    for side in ("seen", "unseen"):
        recs = [dict(r, setting="all") for r in scored if (gt[r["entry_id"]] in seen) == (side == "seen")]
        if recs:
            s = summarize(recs)["all"]
            out[side] = {"n": s["n"], "tool_acc": s["tool_acc"], "param_acc": s["param_acc"]}
        else:
            out[side] = {"n": 0, "tool_acc": None, "param_acc": None}
    return out
