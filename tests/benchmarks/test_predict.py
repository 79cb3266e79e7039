"""Smoke test of the benchmark code path with the tiny random model (speed targets live in outputs/bench.json)."""

from __future__ import annotations

import json

import pytest

from petool_lib.benchmarks.predict import bench_items, main, speedups


def test_bench_items_are_fixed(official):
    entries = official
    a, b = bench_items(entries, 5, seed=0), bench_items(entries, 5, seed=0)
    assert [(s, e.entry_id) for s, e in a] == [(s, e.entry_id) for s, e in b]
    assert len(a) == 5 and len({e.entry_id for _, e in a}) == 2  # ceil(5/3) entries, all settings, cut to 5


def test_bench_smoke(tmp_path, official_path):
    out = tmp_path / "bench.json"
    code = main(["--test", official_path, "--out", str(out), "--n", "2", "--model", "tiny", "--modes", "rank,rank_xgrammar", "--max-prompt-tokens", "1200",
                 "--whole-test-set", "",
                 "--ref-max-new-tokens", "4", "--ref-max-length", "1200", "--quiet",
                 "--dtype", "bfloat16", "--ref-dtype", "float32"])
    assert code == 0
    res = json.loads(out.read_text())
    assert list(res["phases"]) == ["rank", "rank_xgrammar", "reference_bfloat16", "reference"]
    assert res["phases"]["rank_xgrammar"]["paper"]["errors"].get("invalid_format", 0) == 0
    assert res["config"]["dtype"] == "bfloat16" and res["config"]["reference"]["dtype"] == "float32"
    for phase in res["phases"].values():
        assert phase["n"] == 2 and phase["samples_per_s"] > 0 and phase["peak_rss_mb"] > 0
        assert phase["paper"]["n"] == 2 and 0 <= phase["paper"]["tool_acc"] <= 1
    assert res["speedup"]["reference"] == 1.0 and res["speedup"]["rank"] > 0
    assert res["speedup_same_dtype"]["reference_bfloat16"] == 1.0
    assert res["speedup_readable"]["rank"] > 0 and set(res["speedup_readable"]) == {"rank", "rank_xgrammar"}
    assert res["phases"]["rank"]["paper"]["errors"].get("invalid_format", 0) == 0
    assert out.with_suffix(".png").stat().st_size > 1000
    for name in res["phases"]:
        assert len((tmp_path / "bench_rows" / f"{name}.jsonl").read_text().splitlines()) == 2


def test_speedups_count_failed_rows_but_readable_speedup_does_not():
    def row(eid, lat, error=None):
        return {"entry_id": eid, "setting": "preferred", "latency_s": lat, **({"error": error} if error else {})}

    ref_rows = [row(1, 30.0), row(2, 30.0), row(3, 30.0), row(4, 30.0)]
    ours = [row(1, 5.0), row(2, 5.0), row(3, 5.0), row(4, 0.0, "prompt beyond the context window")]
    result = {"phases": {"constrained": {"samples_per_s": 4 / 15.0, "wall_s": 15.0},
                         "reference": {"samples_per_s": 4 / 120.0, "wall_s": 120.0}}}
    speedups(result, {"constrained": ours, "reference": ref_rows}, "reference")
    assert result["speedup"]["constrained"] == 8.0  # the failed row is a (free) sample
    assert result["speedup_readable"]["constrained"] == 6.0  # 3 readable prompts: 90 s of reference over 15 s
    assert result["speedup_same_dtype"] == result["speedup"]


def test_whole_test_set_throughput_is_set_beside_the_reference(tmp_path):
    from petool_lib.benchmarks.predict import whole_test_set

    assert whole_test_set(tmp_path / "absent.json", 0.03) is None
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"model": "smollm2", "adapter": None, "config": {"mode": "rank"},
                             "speed": {"n": 3000, "seconds": 2500.0},
                             "evaluation": {"paper": {"ratings": {"tool_acc": 0.18}}}}))
    w = whole_test_set(f, 0.04)
    assert w["samples_per_s"] == 1.2 and w["speedup"] == 30.0 and w["tool_acc"] == {"ratings": 0.18}
    assert whole_test_set(f, None)["speedup"] is None


def test_phases_name_a_mode_and_a_grammar():
    from petool_lib.benchmarks.predict import default_phases, phase_mode
    from petool_lib.inference import DecodeConfig

    cfg = DecodeConfig(max_value_chars=48)
    assert phase_mode("constrained_xgrammar", cfg) == ("constrained", DecodeConfig(max_value_chars=48))
    assert phase_mode("rank", cfg) == ("rank", DecodeConfig(max_value_chars=48, grammar="builtin"))
    assert default_phases() == ["generate", "constrained", "constrained_xgrammar", "rank", "rank_xgrammar"]
    with pytest.raises(ValueError, match="unknown phase"):
        phase_mode("beam", cfg)
