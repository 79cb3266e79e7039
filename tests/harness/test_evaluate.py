import json
import subprocess
import sys

import pytest

from petool_lib.harness.evaluate import PredictionError, evaluate_rows, load_predictions, main, write_predictions


def _perfect(entries, settings=("preferred", "ratings", "chronological")):
    return [{"entry_id": e.entry_id, "setting": s, "response": json.dumps(e.ground_truth, ensure_ascii=False)}
            for s in settings for e in entries]


def test_perfect_and_missing_rows(official):
    rows = _perfect(official)
    res = evaluate_rows(official, rows)
    for s in res.values():
        assert (s["n"], s["tool_correct"], s["param_correct"], s["missing"]) == (1000, 1000, 1000, 0)
        assert s["errors"]["correct"] == 1000
    # drop 10 preferred rows: still n=1000, 10 missing, counted wrong
    kept = [r for r in rows if not (r["setting"] == "preferred" and r["entry_id"] in {e.entry_id for e in official[:10]})]
    res = evaluate_rows(official, kept)
    assert res["preferred"]["n"] == 1000 and res["preferred"]["missing"] == 10
    assert res["preferred"]["tool_acc"] == pytest.approx(0.99)
    assert res["preferred"]["errors"]["missing"] == 10
    assert sum(res["preferred"]["errors"].values()) == 1000


def test_cli_limit_scores_the_predict_subset_and_counts_its_missing_rows(official, official_path, tmp_path, capsys):
    from petool_lib.core.data import select_subset

    subset = select_subset(official, 20, 0)
    ids = {e.entry_id for e in subset}
    outside = [e for e in official if e.entry_id not in ids][:3]
    rows = _perfect(subset[1:], ("ratings",)) + _perfect(outside, ("ratings",))  # one subset row missing
    p = write_predictions(tmp_path / "p.jsonl", rows)
    assert main(["--test", official_path, "--predictions", str(p), "--setting", "r", "--json", "--limit", "20"]) == 0
    got = capsys.readouterr()
    out = json.loads(got.out)["ratings"]
    assert (out["n"], out["tool_correct"], out["missing"]) == (20, 19, 1)
    assert "3 row(s) are outside the --limit 20 subset (seed 0)" in got.err
    assert main(["--test", official_path, "--predictions", str(p), "--setting", "r", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["ratings"]  # without --limit: the whole set is the denominator
    assert (out["n"], out["tool_correct"], out["missing"]) == (1000, 22, 978)
    assert main(["--test", official_path, "--predictions", str(p), "--setting", "r", "--json", "--limit", "20",
                 "--seed", "1"]) == 0  # another subset: other rows missing, and a warning says so
    out = json.loads(capsys.readouterr().out)["ratings"]
    assert out["n"] == 20 and out["missing"] > 1


def test_bad_prediction_files(official, tmp_path):
    e = official[0]
    cases = {
        "unknown": [{"entry_id": -5, "setting": "p", "response": ""}],
        "duplicate": [{"entry_id": e.entry_id, "setting": "p", "response": ""},
                      {"entry_id": e.entry_id, "setting": "preferred", "response": "x"}],
        "setting": [{"entry_id": e.entry_id, "setting": "nope", "response": ""}],
        "type": [{"entry_id": str(e.entry_id), "setting": "p", "response": ""}],
    }
    for name, rows in cases.items():
        p = write_predictions(tmp_path / f"{name}.jsonl", rows)
        with pytest.raises(PredictionError, match=f"{name}.jsonl: row"):
            load_predictions(p, official)
    bad = tmp_path / "badjson.jsonl"
    bad.write_text('{"entry_id": 1}\n{oops\n')
    with pytest.raises(PredictionError, match="badjson.jsonl: line 2"):
        load_predictions(bad, official)


def test_cli_json(official, official_path, tmp_path, capsys):
    rows = _perfect(official[:50], ("ratings",))
    p = write_predictions(tmp_path / "p.jsonl", rows)
    assert main(["--test", official_path, "--predictions", str(p), "--setting", "r", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["ratings"]
    assert out["ratings"]["n"] == 1000 and out["ratings"]["tool_correct"] == 50
    assert out["ratings"]["tool_acc"] == pytest.approx(0.05) and out["ratings"]["missing"] == 950
    assert set(out["ratings"]) == {"n", "tool_correct", "param_correct", "tool_acc", "param_acc", "missing", "errors",
                                   "tool_ci95", "param_ci95"}
    lo, hi = out["ratings"]["tool_ci95"]
    assert lo == pytest.approx(0.03813, abs=1e-4) and hi == pytest.approx(0.06529, abs=1e-4)  # Wilson, 50 of 1000
    # readable table and a clear error exit for a bad file
    assert main(["--test", official_path, "--predictions", str(p), "--scoring", "robust"]) == 0
    assert "Tool Acc" in capsys.readouterr().out
    bad = write_predictions(tmp_path / "b.jsonl", [{"entry_id": -1, "setting": "p", "response": ""}])
    r = subprocess.run([sys.executable, "-m", "petool_lib.harness.evaluate", "--test", official_path, "--predictions", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "entry_id -1 is not in the test set" in r.stderr


def test_wilson_interval():
    from petool_lib.harness.evaluate import wilson_interval

    lo, hi = wilson_interval(50, 1000)
    assert (round(lo, 4), round(hi, 4)) == (0.0381, 0.0653)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.27 < hi < 0.28
    lo, hi = wilson_interval(10, 10)
    assert 0.72 < lo < 0.73 and hi == pytest.approx(1.0)


def test_no_history_rows_are_scored_not_dropped(official):
    rows = _perfect(official[:20], ("preferred", "none"))
    res = evaluate_rows(official, rows)
    assert list(res) == ["preferred", "ratings", "chronological", "none"]
    assert res["none"]["n"] == 1000 and res["none"]["tool_correct"] == 20
    assert res["ratings"]["missing"] == 1000
    assert list(evaluate_rows(official, _perfect(official[:5], ("preferred",)))) == ["preferred", "ratings",
                                                                                   "chronological"]


def test_cli_by_pick(official, official_path, tmp_path, capsys):
    """``--by pick``: a wrong provider of the right function is told apart from a wrong function; every entry is
    counted (a missing row is ``no tool``)."""
    from petool_lib.core.data import provider_of
    from petool_lib.harness.cases import group_history

    rows = _perfect(official[1:40], ("ratings",))  # official[0]: missing
    shown = unshown = None
    for r, e in zip(rows, official[1:40]):
        others = [n for n in e.group_names if n != e.ground_truth["tool_name"]]
        seen = {p for p, _ in group_history(e, "ratings")}
        if shown is None and any(provider_of(n) in seen for n in others):
            shown = e.entry_id
            r["response"] = json.dumps({"tool_name": next(n for n in others if provider_of(n) in seen),
                                        "parameters": {}})
        elif unshown is None and any(provider_of(n) not in seen for n in others):
            unshown = e.entry_id
            r["response"] = json.dumps({"tool_name": next(n for n in others if provider_of(n) not in seen),
                                        "parameters": {}})
    assert shown is not None and unshown is not None
    rows[-1]["response"] = json.dumps({"tool_name": "<Made>.<Up>.<tool>", "parameters": {}})
    p = write_predictions(tmp_path / "p.jsonl", rows)
    assert main(["--test", official_path, "--predictions", str(p), "--setting", "r", "--by", "pick", "--json"]) == 0
    picks = json.loads(capsys.readouterr().out)["by_pick"]["ratings"]
    n = {k: v["n"] for k, v in picks.items()}
    assert n == {"answer": 36, "shown provider": 1, "unshown provider": 1, "other function": 1, "no tool": 961}
    assert picks["answer"]["tool_correct"] == n["answer"] and picks["shown provider"]["tool_correct"] == 0


def test_cli_by_decision_case(official, official_path, tmp_path, capsys):
    """``--by case``: accuracy per decision case; on the official test set rating-integrated is 415 ``switch`` /
    585 ``avoid`` entries (harness.cases), and a prediction missing from a case counts as wrong there."""
    rows = [r for r in _perfect(official, ("ratings",)) if r["entry_id"] != official[0].entry_id]
    p = write_predictions(tmp_path / "p.jsonl", rows)
    assert main(["--test", official_path, "--predictions", str(p), "--setting", "r", "--by", "case", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cases = out["by_case"]["ratings"]
    assert {k: v["n"] for k, v in cases.items()} == {"avoid": 585, "switch": 415}
    assert sum(v["tool_correct"] for v in cases.values()) == 999
    assert sum(v["missing"] for v in cases.values()) == 1
    assert main(["--test", official_path, "--predictions", str(p), "--setting", "r", "--by", "case"]) == 0
    text = capsys.readouterr().out
    assert "ratings by case" in text and text.count("avoid") == 1 and "switch" in text
