"""Functional grouping: one API per provider, bounded size, one category, official seeds kept; pairwise agreement."""

from __future__ import annotations

import numpy as np

from petool_lib.core.data import provider_of
from petool_lib.synthesis.grouping import group_apis, pairwise_agreement

from .helpers import make_api as _api


def test_grouping_respects_providers_size_and_seeds() -> None:
    apis = [_api("C", f"T{i}", "same") for i in range(8)] + [_api("C", "T0", "other"), _api("D", "T9", "same")]
    vecs = np.array([[1.0, 0.0]] * 8 + [[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    groups = group_apis(apis, vecs, threshold=0.9, max_size=6)
    for g in groups:
        provs = [provider_of(n) for n in g.members]
        assert len(set(provs)) == len(provs) and g.size <= 6
        assert {n.split(">.<")[0] for n in g.members} == {"<C"}  # never across categories by default
    seeded = group_apis(apis, vecs, threshold=0.9, seeds=[("42", ["<C>.<T0>.<same>", "<C>.<T1>.<same>"])])
    official = [g for g in seeded if g.gid == "42"]
    assert official and official[0].members == ["<C>.<T0>.<same>", "<C>.<T1>.<same>"] and official[0].source == "official"
    assert pairwise_agreement([["a", "b"], ["c"]], [["a", "b", "c"]]) == {
        "precision": 1.0, "recall": round(1 / 3, 4), "f1": 0.5, "pairs_true": 3, "pairs_predicted": 1}
