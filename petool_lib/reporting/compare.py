"""Two runs side by side: which metrics differ, how many predictions differ, and what differs in their manifests
(CPU model and flags, threads, kernel-forcing variables, dtypes, library versions, parameters).

    python -m petool_lib compare RUN_A RUN_B [--json] [--check] [--tol 0] [--limit 40]

A run is a directory holding ``metrics.json`` and ``manifest.json`` (``outputs/<run>/``; a bare name is looked up
under ``outputs/``). ``--check`` exits 1 when a metric or a prediction differs (beyond ``--tol`` for numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..core.data import REPO_ROOT
from ..core.io import JsonlError, read_json, read_jsonl

# manifest fields that differ between any two runs by construction: not a difference between machines
RUN_SPECIFIC = ("run", "status", "total_seconds", "stages", "parameters.run_dir", "parameters.train_profile")
# metrics that are wall times or speeds differ between any two runs: counted apart, never a --check failure.
# A path is one when any of its parts ends so (``train_seconds``, ``latency_s``, ``timings_s.<stage>``) or names
# a speed section (``evaluation_speed``).
TIMING_SUFFIXES = ("seconds", "_s", "_sec", "_speed", "elapsed", "wall_time")


def run_dir(run: str | Path) -> Path:
    """``run`` when it is a directory, else ``outputs/<run>`` under the repository."""
    p = Path(run)
    if p.is_dir():
        return p
    q = REPO_ROOT / "outputs" / str(run)
    if q.is_dir():
        return q
    raise FileNotFoundError(f"no run directory {run!r} (nor {q})")


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists as ``{"a.b.0.c": leaf}``."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = ((str(i), v) for i, v in enumerate(obj))
    else:
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _same(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tol)
    return a == b


def is_timing(path: str) -> bool:
    return any(part.lower().endswith(TIMING_SUFFIXES) for part in path.split("."))


def diff(a: dict[str, Any], b: dict[str, Any], tol: float = 0.0,
         skip: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """``(path, value in a, value in b)`` for every leaf that differs (a missing side is ``None``), sorted."""
    fa, fb = flatten(a), flatten(b)
    keep = [k for k in sorted(set(fa) | set(fb)) if not any(k == s or k.startswith(s + ".") for s in skip)]
    return [(k, fa.get(k), fb.get(k)) for k in keep if not (k in fa and k in fb and _same(fa[k], fb[k], tol))]


def _prediction_file(recorded: str, run: Path) -> Path:
    """A recorded prediction path, or the file of that name under ``<run>/predictions`` (a run copied elsewhere)."""
    p = Path(recorded)
    return p if p.is_file() else run / "predictions" / p.name


def _responses(path: Path) -> dict[tuple[Any, Any], Any]:
    return {(r.get("entry_id"), r.get("setting")): r.get("response") for r in read_jsonl(path) if isinstance(r, dict)}


def prediction_diffs(a: Path, ma: dict[str, Any], b: Path, mb: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """For every prediction file both runs evaluated under one name: rows compared, rows whose response differs,
    rows only one run has (``error`` when a file cannot be read)."""
    fa, fb = ma.get("evaluation_files", {}), mb.get("evaluation_files", {})
    out: dict[str, dict[str, Any]] = {}
    for testset in sorted(set(fa) & set(fb)):
        for name in sorted(set(fa[testset]) & set(fb[testset])):
            key = f"{testset}/{name}"
            try:
                ra = _responses(_prediction_file(fa[testset][name], a))
                rb = _responses(_prediction_file(fb[testset][name], b))
            except (OSError, JsonlError) as exc:
                out[key] = {"error": str(exc)}
                continue
            both = set(ra) & set(rb)
            out[key] = {"rows": len(both), "differ": sum(ra[k] != rb[k] for k in both),
                        "only_a": len(set(ra) - set(rb)), "only_b": len(set(rb) - set(ra))}
    return out


def compare_runs(run_a: str | Path, run_b: str | Path, tol: float = 0.0) -> dict[str, Any]:
    """Metrics (timings apart), predictions and manifests of two runs, compared."""
    a, b = run_dir(run_a), run_dir(run_b)

    def load(p: Path) -> dict[str, Any]:
        return read_json(p) if p.is_file() else {}

    ma, mb = load(a / "metrics.json"), load(b / "metrics.json")
    va, vb = ({k: v for k, v in m.items() if k != "evaluation_files"} for m in (ma, mb))  # paths: compared below
    metrics = diff(va, vb, tol)
    n_leaves = len(set(flatten(va)) | set(flatten(vb)))
    return {
        "a": str(a), "b": str(b), "tol": tol, "metric_leaves": n_leaves,
        "metrics": [d for d in metrics if not is_timing(d[0])],
        "timings": [d for d in metrics if is_timing(d[0])],
        "predictions": prediction_diffs(a, ma, b, mb),
        "manifest": diff(load(a / "manifest.json"), load(b / "manifest.json"), skip=RUN_SPECIFIC),
    }


def differs(result: dict[str, Any]) -> bool:
    """True when a metric (not a timing) or a prediction differs."""
    return bool(result["metrics"]) or any(v.get("differ") or v.get("only_a") or v.get("only_b") or v.get("error")
                                          for v in result["predictions"].values())


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "—" if v is None else json.dumps(v) if not isinstance(v, str) else v


def _lines(rows: list[tuple[str, Any, Any]], limit: int) -> list[str]:
    out = []
    for path, x, y in rows[:limit]:
        delta = ""
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            delta = f" ({y - x:+.4g})"
        out.append(f"  {path}: {_fmt(x)} -> {_fmt(y)}{delta}")
    if len(rows) > limit:
        out.append(f"  ... {len(rows) - limit} more (--limit)")
    return out


def format_report(result: dict[str, Any], limit: int = 40) -> str:
    """The comparison as text: differing metrics, predictions, timings (a count), manifest differences."""
    lines = [f"A: {result['a']}", f"B: {result['b']}", ""]
    m = result["metrics"]
    lines.append(f"metrics: {len(m)} of {result['metric_leaves']} values differ"
                 + (f" beyond {result['tol']}" if result["tol"] else "") + (":" if m else ""))
    lines += _lines(m, limit)
    if result["predictions"]:
        lines.append("predictions (rows whose response differs):")
        for key, v in result["predictions"].items():
            lines.append(f"  {key}: " + (v["error"] if "error" in v else
                         f"{v['differ']} of {v['rows']}" + (f", only in A {v['only_a']}" if v["only_a"] else "")
                         + (f", only in B {v['only_b']}" if v["only_b"] else "")))
    if result["timings"]:
        lines.append(f"timings: {len(result['timings'])} differ (wall times and speeds; not compared)")
    md = result["manifest"]
    lines.append(f"manifest: {len(md)} differences" + (":" if md else " (same machine, versions and parameters)"))
    lines += _lines(md, limit)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m petool_lib compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--tol", type=float, default=0.0, help="numbers closer than this are equal (default: exact)")
    ap.add_argument("--limit", type=int, default=40, help="differences listed per section")
    ap.add_argument("--json", action="store_true", help="the comparison as JSON")
    ap.add_argument("--check", action="store_true", help="exit 1 when a metric or a prediction differs")
    args = ap.parse_args(argv)
    try:
        result = compare_runs(args.run_a, args.run_b, args.tol)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str) if args.json else format_report(result, args.limit))
    return 1 if args.check and differs(result) else 0


if __name__ == "__main__":
    raise SystemExit(main())
