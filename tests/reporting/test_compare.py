"""compare: two runs' differing metrics, differing predictions, and what differs in their manifests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from petool_lib.reporting.compare import compare_runs, diff, flatten, format_report, main


def _run(root: Path, name: str, tool_acc: float, response: str, cpu: str, threads: int) -> Path:
    run = root / name
    (run / "predictions").mkdir(parents=True)
    pred = run / "predictions" / "baseline-functional_official.jsonl"
    pred.write_text("".join(json.dumps({"entry_id": i, "setting": "preferred", "response": response if i == 0 else "x"})
                            + "\n" for i in range(3)))
    metrics = {"evaluation": {"official": {"baseline-functional": {"paper": {"preferred": {
                   "tool_acc": tool_acc, "param_acc": 0.475, "n": 1000, "tool_ci95": [0.15, 0.2]}}}}},
               "evaluation_files": {"official": {"baseline-functional": f"/elsewhere/{name}/{pred.name}"}},
               "training": {"sft": {"train_seconds": 10.0 + threads}}}
    manifest = {"run": name, "status": "ok", "stages": {"01": {"seconds": threads}}, "packages": {"torch": "2.13.0"},
                "environment": {"cpu": {"model": cpu, "isa_flags": ["avx2"]}, "torch": {"threads": threads}},
                "parameters": {"seed": 0, "run_dir": str(run)}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_flatten_and_diff():
    assert flatten({"a": {"b": [1, {"c": 2}]}}) == {"a.b.0": 1, "a.b.1.c": 2}
    assert diff({"a": 1.0, "b": 2}, {"a": 1.0 + 1e-9, "c": 3}, tol=1e-6) == [("b", 2, None), ("c", None, 3)]


def test_same_runs_differ_in_nothing(tmp_path):
    a = _run(tmp_path, "a", 0.175, "r", "Xeon", 2)
    b = _run(tmp_path, "b", 0.175, "r", "Xeon", 2)
    res = compare_runs(a, b)
    assert res["metrics"] == [] and res["manifest"] == []  # run name, run_dir, stage times are not differences
    assert res["predictions"] == {"official/baseline-functional": {"rows": 3, "differ": 0, "only_a": 0, "only_b": 0}}
    assert main([str(a), str(b), "--check"]) == 0


def test_different_runs_name_the_metric_the_predictions_and_the_machine(tmp_path, capsys):
    a = _run(tmp_path, "a", 0.175, "r", "Intel Xeon (AMX)", 2)
    b = _run(tmp_path, "b", 0.184, "s", "AMD EPYC", 1)
    res = compare_runs(a, b)
    assert [d[0] for d in res["metrics"]] == ["evaluation.official.baseline-functional.paper.preferred.tool_acc"]
    assert [d[0] for d in res["timings"]] == ["training.sft.train_seconds"]  # counted apart
    assert res["predictions"]["official/baseline-functional"]["differ"] == 1  # found under <run>/predictions
    assert {d[0] for d in res["manifest"]} == {"environment.cpu.model", "environment.torch.threads"}
    text = format_report(res)
    assert "tool_acc: 0.175 -> 0.184 (+0.009)" in text and "1 of 3" in text and "AMD EPYC" in text
    assert main([str(a), str(b), "--check"]) == 1
    assert main([str(a), str(b), "--check", "--tol", "0.01"]) == 1  # the prediction still differs
    capsys.readouterr()
    assert main([str(a), str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest"]


def test_cli_dispatch_and_a_missing_run(tmp_path):
    a = _run(tmp_path, "a", 0.175, "r", "Xeon", 2)
    r = subprocess.run([sys.executable, "-m", "petool_lib", "compare", str(a), str(a)], capture_output=True, text=True)
    assert r.returncode == 0 and "metrics: 0 of" in r.stdout
    assert main([str(a), str(tmp_path / "nope")]) == 2
