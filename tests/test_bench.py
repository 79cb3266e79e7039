"""Smoke test of the benchmark code path with the tiny random model (speed targets live in outputs/bench.json)."""

from __future__ import annotations

import json

from petool_lib.bench import bench_items, main
from petool_lib.data import load_test_set


def test_bench_items_are_fixed():
    entries = load_test_set()
    a, b = bench_items(entries, 5, seed=0), bench_items(entries, 5, seed=0)
    assert [(s, e.entry_id) for s, e in a] == [(s, e.entry_id) for s, e in b]
    assert len(a) == 5 and len({e.entry_id for _, e in a}) == 2  # ceil(5/3) entries, all settings, cut to 5


def test_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    code = main(["--out", str(out), "--n", "2", "--model", "tiny", "--modes", "rank", "--max-prompt-tokens", "1200",
                 "--ref-max-new-tokens", "4", "--ref-max-length", "1200", "--quiet"])
    assert code == 0
    res = json.loads(out.read_text())
    assert set(res["phases"]) == {"rank", "reference"}
    for phase in res["phases"].values():
        assert phase["n"] == 2 and phase["samples_per_s"] > 0 and phase["peak_rss_mb"] > 0
        assert phase["paper"]["n"] == 2 and 0 <= phase["paper"]["tool_acc"] <= 1
    assert res["speedup"]["reference"] == 1.0 and res["speedup"]["rank"] > 0
    assert res["phases"]["rank"]["paper"]["errors"].get("invalid_format", 0) == 0
    assert out.with_suffix(".png").stat().st_size > 1000
    assert len((tmp_path / "bench_rows" / "reference.jsonl").read_text().splitlines()) == 2
