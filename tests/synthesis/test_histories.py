"""Histories in the official structure, and the structure measurements (checked on the official test set)."""

from __future__ import annotations

import json
import random
from collections import Counter

from petool_lib.synthesis.histories import (P_REJECTED_GROUP_API, RATED0_COUNTS, call_item, group_size_counts,
                                            measure_structure, prompt_histories, structure_table)


def test_prompt_histories_follow_the_official_structure() -> None:
    full = [call_item(f"pref {i}", f"<C>.<P{i % 3}>.<a{i}>", {}) for i in range(30)]
    rejected = [call_item(f"old {i}", f"<C>.<R>.<b{i}>", {}) for i in range(5)]
    h = prompt_histories(full, rejected, random.Random(0))
    assert [x.instruction for x in h["preferred"]] == [f"pref {i}" for i in range(10, 30)]
    assert len(h["ratings"]) == 20 and sorted(x.rating for x in h["ratings"]) == [0] * 5 + [1] * 15
    assert {x.instruction for x in h["ratings"] if x.rating == 1} == {f"pref {i}" for i in range(15, 30)}
    chrono = h["chronological"]
    assert all(x.rating is None for x in chrono + h["preferred"])
    assert {x.instruction for x in chrono[:5]} == {f"old {i}" for i in range(5)}
    assert [x.instruction for x in chrono[5:]] == [f"pref {i}" for i in range(15, 30)]
    short = prompt_histories(full[:4], rejected[:2], random.Random(0))
    assert len(short["preferred"]) == 4 and len(short["ratings"]) == 6


def test_structure_constants_are_the_official_measurements(official) -> None:
    s = measure_structure(official)
    assert s["rated0_items"] == {str(k): v for k, v in RATED0_COUNTS.items()}
    assert s["rated0_includes_group_api"] == P_REJECTED_GROUP_API
    assert s["rated0_one_provider"] == 1.0 and s["chronological_rated0_first"] == 1.0
    assert s["target_in_history"] == 0.0 and s["group_apis_in_history"] == 0.0
    sizes = group_size_counts(official)
    assert sizes == s["group_size"] == {str(k): v for k, v in sorted(Counter(len(e.same_func) for e in official).items())}
    assert sum(sizes.values()) == len(official)


def test_structure_table_has_one_column_per_measured_set(sample_run) -> None:
    _, m = sample_run
    st = dict(m["structure"], official=None)  # as without the official test set
    table = structure_table(st)
    assert list(table) == ["synthesized test", "synthesized train"]
    col = table["synthesized test"]
    assert col["entries"] == 6 and json.loads(col["rated0_items"]) == st["synthesized_test"]["rated0_items"]
    assert all(not isinstance(v, dict) for c in table.values() for v in c.values())
