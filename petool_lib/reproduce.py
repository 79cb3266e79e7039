"""Run the numbered notebooks in order with papermill into ``outputs/<run>/``, with a manifest and a results table.

    python -m petool_lib.reproduce --profile configs/cpu.yaml [--run NAME] [--only 05,06]
    python -m petool_lib.reproduce --run NAME --no-run --readme README.md     # publish a finished run (make readme)

Parameters are the profile YAML's top-level keys (what ``papermill -f`` would pass, less the ``training:`` section)
plus ``run_dir`` and ``train_profile`` (the profile's path). The executed notebooks go to ``<run>/notebooks/``;
``<run>/manifest.json`` records the profile, parameters (and the ``training:`` section), git commit, the machine
(CPU model and flags, threads, dtypes, library versions: :func:`petool_lib.core.runs.environment`) and per-stage
wall times; ``<run>/results.md`` holds the results table. A failing notebook stops the run with a non-zero exit
(the manifest says which stage failed). ``python -m petool_lib compare RUN_A RUN_B`` diffs two runs.

A run never writes outside ``outputs/<run>/``: copying its table into the committed README is the explicit step
``--readme README.md`` (``make readme``), so running the main job leaves the checkout clean.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .core.data import REPO_ROOT
from .core.io import write_json
from .core.runs import PACKAGES, environment, package_versions, run_path  # noqa: F401 (re-exported)

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
KERNEL = "petool"
RESULTS = "results.md"  # the run's results table, what ``--readme`` copies into the README


def run_dir_of(run: str) -> Path:
    """``outputs/<run>`` under the repository (an absolute ``run`` as given)."""
    return Path(run) if Path(run).is_absolute() else REPO_ROOT / "outputs" / run


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks ``NN_*.ipynb`` in order (optionally only those whose number is in ``only``)."""
    found = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in found if not only or p.name[:2] in only]


INJECTED = ("run_dir", "train_profile")  # parameters reproduce adds itself; passed only where a notebook declares them
LIBRARY_KEYS = ("training",)  # profile mappings the library reads itself (petool_lib.training), not notebook parameters


def load_profile(path: str | Path) -> dict[str, Any]:
    """The notebook parameters of a profile YAML (``configs/<profile>.yaml``): every top-level key except the
    :data:`LIBRARY_KEYS` sections, which notebooks 03-04 load through ``train_profile`` (the profile's own path)."""
    with open(path, encoding="utf-8") as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: a profile must be a mapping of parameter names to values")
    return {k: v for k, v in params.items() if k not in LIBRARY_KEYS}


def library_sections(path: str | Path) -> dict[str, Any]:
    """The profile's :data:`LIBRARY_KEYS` sections (``training:``: dtype, steps, budgets), for the manifest."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    return {k: data[k] for k in LIBRARY_KEYS if isinstance(data, dict) and k in data}


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def ensure_kernel() -> str:
    """A kernel bound to this interpreter, installed inside its environment (``--sys-prefix``) under a name unique
    to the interpreter, so it can neither shadow nor be shadowed by the user's own kernels."""
    import hashlib

    from jupyter_client.kernelspec import KernelSpecManager

    name = f"{KERNEL}-{hashlib.sha1(str(Path(sys.executable).resolve()).encode()).hexdigest()[:10]}"
    specs = KernelSpecManager().find_kernel_specs()
    if name not in specs:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", name,
                        "--display-name", f"Python (petool, {sys.prefix})"], check=True, capture_output=True)
    return name


def notebook_parameters(nb: Path) -> set[str]:
    """The names a notebook's ``parameters`` cell declares, as papermill parses them."""
    import papermill as pm

    return set(pm.inspect_notebook(str(nb)))


def split_parameters(params: dict[str, Any], nbs: list[Path], profile: str | Path) -> dict[Path, dict[str, Any]]:
    """Each notebook gets the profile keys it declares; a key that no notebook declares is a typo: error."""
    declared = {nb: notebook_parameters(nb) for nb in nbs}
    known = set().union(*declared.values())
    unknown = sorted(set(params) - known - set(INJECTED))
    if unknown and len(nbs) == len(notebooks()):
        raise ValueError(f"{profile}: no notebook declares the parameter(s) {unknown}; "
                         f"known: {sorted(known)}")
    return {nb: {k: v for k, v in params.items() if k in names} for nb, names in declared.items()}


def reproduce(profile: str | Path, run: str | None = None, only: list[str] | None = None,
              kernel: str | None = None, progress: bool = True) -> Path:
    """Execute the notebooks; return the run directory. Raises on the first failing notebook."""
    import papermill as pm

    params = load_profile(profile)
    run_name = run or Path(profile).stem
    run_dir = run_path(run_dir_of(run_name))
    params["run_dir"] = str(run_dir)
    params["train_profile"] = str(Path(profile).resolve())  # notebooks 03-04 load its training: section
    kernel = kernel or ensure_kernel()
    out_dir = run_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = run_dir / "manifest.json"
    old = json.loads(manifest_path.read_text()) if manifest_path.is_file() and only else {}
    manifest: dict[str, Any] = {
        "profile": str(profile), "run": run_name, "parameters": params, "git": git_commit(),
        "python": sys.version.split()[0], "platform": platform.platform(), "packages": package_versions(),
        "environment": environment(), "library_sections": library_sections(profile),
        "stages": old.get("stages", {}), "status": "running",
    }
    nbs = notebooks(only)
    if not nbs:
        raise FileNotFoundError(f"no notebooks to run in {NOTEBOOK_DIR} (only={only})")
    per_notebook = split_parameters(params, nbs, profile)
    for nb in nbs:
        t0 = time.perf_counter()
        manifest["stages"][nb.stem] = {"status": "running"}
        write_json(manifest_path, manifest, indent=2)
        print(f"== {nb.name} -> {out_dir / nb.name}", flush=True)
        try:
            pm.execute_notebook(str(nb), str(out_dir / nb.name), parameters=per_notebook[nb], kernel_name=kernel,
                                cwd=str(REPO_ROOT), progress_bar=progress, log_output=False)
        except Exception as exc:
            manifest["stages"][nb.stem] = {"status": "failed", "seconds": round(time.perf_counter() - t0, 1),
                                           "error": f"{type(exc).__name__}: {str(exc)[:2000]}"}
            manifest["status"] = f"failed at {nb.name}"
            write_json(manifest_path, manifest, indent=2)
            raise
        manifest["stages"][nb.stem] = {"status": "ok", "seconds": round(time.perf_counter() - t0, 1)}
    manifest["status"] = "ok"
    manifest["total_seconds"] = round(sum(s.get("seconds", 0) for s in manifest["stages"].values()), 1)
    write_json(manifest_path, manifest, indent=2)
    write_results(run_dir)
    return run_dir


def write_results(run_dir: str | Path) -> Path:
    """``<run>/results.md``: the results table generated from ``<run>/metrics.json`` (the README block's text)."""
    from .core.io import write_text_atomic
    from .reporting.report import readme_block

    return write_text_atomic(Path(run_dir) / RESULTS, readme_block(run_dir) + "\n")


def publish(run_dir: str | Path, readme: str | Path) -> None:
    """Copy a finished run's results table into ``readme`` (between its results markers), rewriting
    ``<run>/results.md`` from ``metrics.json`` first so the two agree. Refuses a run whose manifest is missing or
    not ``ok`` (a failed or running reproduce), and a README without the markers."""
    from .reporting.report import README_END, README_START, update_readme

    run_dir = Path(run_dir)
    manifest = run_dir / "manifest.json"
    status = json.loads(manifest.read_text()).get("status") if manifest.is_file() else None
    if status != "ok":
        raise ValueError(f"{run_dir}: not a finished run (manifest status {status!r}); run `make reproduce` first")
    text = Path(readme).read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme}: no results markers ({README_START} ... {README_END}) to replace")
    write_results(run_dir)
    update_readme(run_dir, readme)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m petool_lib.reproduce", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=str(REPO_ROOT / "configs" / "cpu.yaml"))
    ap.add_argument("--run", default=None, help="run name under outputs/ (default: the profile's name)")
    ap.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 05,06")
    ap.add_argument("--kernel", default=None, help="Jupyter kernel name (default: one bound to this interpreter)")
    ap.add_argument("--readme", default=None,
                    help="after the run, copy its results.md into this README's results block (the explicit step)")
    ap.add_argument("--no-run", action="store_true",
                    help="run no notebook: only --readme, from the finished run outputs/<run>/")
    args = ap.parse_args(argv)
    only = [s.strip().zfill(2) for s in args.only.split(",")] if args.only else None
    if args.no_run:
        if not args.readme:
            ap.error("--no-run does nothing without --readme")
        run_dir = run_dir_of(args.run or Path(args.profile).stem)
    else:
        try:
            run_dir = reproduce(args.profile, args.run, only, args.kernel)
        except Exception as exc:  # noqa: BLE001 - fail loudly with the stage named, non-zero exit
            print(f"reproduce FAILED: {type(exc).__name__}: {str(exc)[-3000:]}", file=sys.stderr)
            return 1
        print(f"done: {run_dir} (manifest.json, metrics.json, {RESULTS}, figures/, notebooks/)")
    if args.readme:
        try:
            publish(run_dir, args.readme)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"updated results table in {args.readme} from {run_dir / RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
