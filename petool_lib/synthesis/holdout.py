"""The holdout against the official test set: what training data must not contain, and the leakage report.

``strict`` (default): no official test query appears anywhere in the training data (queries and history
instructions, compared after :func:`~petool_lib.synthesis.instructions.normalize_text`), and no functional group that
contains an official test ground-truth API (or an API documented identically to one of those groups' members,
such as the many Swagger-petstore clones) is a training target; those groups' APIs are also kept out of training
histories and candidate lists. ``shared-pool`` follows the paper's shared tool pool: nothing is filtered, but the
same overlaps are reported, with the official ground-truth APIs training saw as targets, so evaluation can split
seen from unseen APIs.

:func:`split_groups` splits the functional groups into training and test targets under the holdout,
:func:`drop_official_queries` removes official test queries from the instruction pools and :func:`leakage_report`
measures the overlaps on the examples written.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .catalog import Api, Catalog
from ..core.data import Entry, find_test_file, load_test_set
from .exports import sha256_file
from .grouping import Group
from .instructions import Instruction, normalize_text

if TYPE_CHECKING:
    from .config import SynthConfig
    from .examples import Example

HOLDOUTS = ("strict", "shared-pool")


def doc_key(name: str, description: str, required: Iterable[dict[str, Any]]) -> tuple[str, str, tuple[str, ...]]:
    """APIs with the same key are documented identically (name, description, required parameter names)."""
    return (normalize_text(name), normalize_text(description), tuple(sorted(str(p.get("name", "")).lower() for p in required)))


@dataclass
class OfficialReference:
    """What the holdout needs to know about the official test set."""

    path: str
    sha256: str
    entries: list[Entry]
    queries: set[str] = field(default_factory=set)
    gt_apis: set[str] = field(default_factory=set)
    group_apis: set[str] = field(default_factory=set)
    groups: dict[str, list[str]] = field(default_factory=dict)
    doc_keys: set[tuple[str, str, tuple[str, ...]]] = field(default_factory=set)

    @classmethod
    def from_entries(cls, entries: list[Entry], path: str = "", sha: str = "") -> "OfficialReference":
        ref = cls(path=path, sha256=sha, entries=entries)
        for e in entries:
            ref.queries.add(normalize_text(e.query))
            ref.gt_apis.add(e.ground_truth["tool_name"])
            names = e.group_names
            ref.group_apis.update(names)
            ref.groups.setdefault(e.func, sorted(names))
            for a in e.same_func:
                ref.doc_keys.add(doc_key(a.get("api_name", ""), a.get("api_desc", ""), a.get("required_parameters", [])))
        return ref

    def touches(self, api: Api) -> bool:
        """Is this API a member of an official group, or documented identically to one?"""
        return api.full_name in self.group_apis or doc_key(api.name, api.description, api.required_parameters) in self.doc_keys

    def summary(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "entries": len(self.entries), "distinct_queries": len(self.queries),
                "ground_truth_apis": len(self.gt_apis), "groups": len(self.groups), "group_apis": len(self.group_apis)}


def load_reference(test_set: str | None, required: bool = False) -> tuple[OfficialReference | None, str]:
    """Find and load the official test set; ``(None, reason)`` when it is not available (and not ``required``)."""
    try:
        path = find_test_file(test_set, allow_download=required)
        entries = load_test_set(path)
    except (FileNotFoundError, OSError) as exc:
        if required:
            raise
        return None, f"official test set not found ({exc}); holdout check skipped"
    files = getattr(entries, "files", [Path(path)])  # the reference's per-setting layout: three files
    digest = (sha256_file(files[0]) if len(files) == 1
              else hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest())
    return OfficialReference.from_entries(entries, str(path), digest), ""


def split_groups(cfg: SynthConfig, groups: list[Group], catalog: Catalog, ref: OfficialReference | None
                 ) -> tuple[list[Group], list[Group], list[Group]]:
    """(train targets, test targets, blocked): under ``strict`` the groups touching the official test set are
    blocked from training and become the test targets; otherwise a seeded ``test_group_fraction`` of the groups.
    Sets every group's ``split`` (and ``blocked_reason``)."""
    eligible = [g for g in groups if all(catalog.by_name[m].documented for m in g.members)]
    blocked: list[Group] = []
    if cfg.holdout == "strict" and ref is not None:
        for g in eligible:
            hits = [m for m in g.members if ref.touches(catalog.by_name[m])]
            if hits:
                g.blocked_reason = ("contains an official ground-truth API" if any(m in ref.gt_apis for m in hits)
                                    else "shares APIs or docs with an official functional group")
                blocked.append(g)
    open_groups = [g for g in eligible if not g.blocked_reason]
    rng = random.Random(f"{cfg.seed}:groups")
    if blocked:
        test, train = blocked, open_groups
    else:
        order = list(open_groups)
        rng.shuffle(order)
        n_test = 0 if cfg.test <= 0 else max(1, math.ceil(cfg.test_group_fraction * len(order)))
        n_test = min(n_test, max(0, len(order) - 1))
        test, train = sorted(order[:n_test], key=lambda g: g.gid), sorted(order[n_test:], key=lambda g: g.gid)
    for g in train:
        g.split = "train"
    for g in test:
        g.split = "test"
    for g in groups:
        if not g.split:
            g.split = "unused"
    return train, test, blocked


def drop_official_queries(pools: dict[str, list[Instruction]], ref: OfficialReference) -> int:
    """Remove the official test queries from the instruction pools (in place); returns how many were removed."""
    removed = 0
    for name, pool in pools.items():
        kept = [ins for ins in pool if normalize_text(ins.text) not in ref.queries]
        removed += len(pool) - len(kept)
        pools[name] = kept
    return removed


def leakage_report(cfg: SynthConfig, ref: OfficialReference | None, reason: str, train: Sequence[Example],
                   test: Sequence[Example]) -> dict[str, Any]:
    """Overlaps between the training data and the official test set (measured on what was written)."""
    if ref is None:
        return {"holdout": cfg.holdout, "checked": False, "reason": reason}
    q_over = sum(normalize_text(ex.entry.query) in ref.queries for ex in train)
    h_over = sum(normalize_text(h.instruction) in ref.queries for ex in train for h in ex.full_history + ex.rejected_items)
    targets = {ex.entry.ground_truth["tool_name"] for ex in train}
    target_groups = {ex.entry.func: ex.entry.group_names for ex in train}
    gt_groups = sum(any(m in ref.gt_apis for m in names) for names in target_groups.values())
    touching = sum(any(m in ref.group_apis for m in names) for names in target_groups.values())
    anywhere: set[str] = set()
    for ex in train:
        anywhere.update(ex.entry.candidate_names)
        anywhere.update(h.tool_name for h in ex.full_history + ex.rejected_items)
        anywhere.add(ex.entry.ground_truth["tool_name"])
    synth_test_q = {normalize_text(ex.entry.query) for ex in test}
    return {
        "holdout": cfg.holdout, "checked": True,
        "train_queries_in_official_test": q_over,
        "train_history_instructions_in_official_test": h_over,
        "train_target_groups_with_official_gt_api": gt_groups,
        "train_target_groups_with_official_group_api": touching,
        "official_gt_apis_as_train_targets": sorted(targets & ref.gt_apis),
        "official_gt_apis_seen_anywhere_in_train": len(anywhere & ref.gt_apis),
        "official_group_apis_seen_anywhere_in_train": len(anywhere & ref.group_apis),
        "train_queries_in_synth_test": sum(normalize_text(ex.entry.query) in synth_test_q for ex in train),
    }


def leakage_table(report: dict[str, Any]) -> dict[str, Any]:
    """A :func:`leakage_report` with one number per line (the list of official APIs trained on becomes its length)."""
    out = dict(report)
    out["official_gt_apis_as_train_targets"] = len(out.get("official_gt_apis_as_train_targets", []))
    return out
