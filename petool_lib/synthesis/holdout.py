"""The holdout against the official test set: what training data must not contain, and the leakage report.

``strict`` (default): no official test query appears anywhere in the training data (queries and history
instructions, compared after :func:`~petool_lib.synthesis.instructions.normalize_text`), and no functional group that
contains an official test ground-truth API (or an API documented identically to one of those groups' members,
such as the many Swagger-petstore clones) is a training target; those groups' APIs are also kept out of training
histories and candidate lists. ``shared-pool`` follows the paper's shared tool pool: nothing is filtered, but the
same overlaps are reported, with the official ground-truth APIs training saw as targets, so evaluation can split
seen from unseen APIs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .catalog import Api
from ..core.data import Entry, find_test_file, load_test_set
from .exports import sha256_file
from .instructions import normalize_text

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
    return OfficialReference.from_entries(entries, str(path), sha256_file(Path(path))), ""
