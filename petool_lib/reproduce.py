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
import re
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


def _kernel_python(spec_dir: str | Path) -> str | None:
    """The interpreter a kernel spec launches (``argv[0]`` of its ``kernel.json``), or None if unreadable."""
    try:
        argv = json.loads((Path(spec_dir) / "kernel.json").read_text(encoding="utf-8")).get("argv") or []
    except (OSError, ValueError):
        return None
    return str(argv[0]) if argv else None


def _same_environment(python: str | None) -> bool:
    """Whether ``python`` is this interpreter's environment (same ``bin/`` directory; symlinks are not resolved,
    since a venv's ``python`` links to the base interpreter)."""
    return python is not None and Path(python).absolute().parent == Path(sys.executable).absolute().parent


def ensure_kernel() -> str:
    """The one Jupyter kernel of the project, :data:`KERNEL` (``petool``), bound to this interpreter.

    It is installed inside this environment (``ipykernel install --sys-prefix --name petool``), exactly what
    ``make kernel`` runs, so ``make reproduce``, ``make lab`` and the tests all use the same kernel. Installed (or
    reinstalled) when missing or bound to another interpreter; kernels named ``petool-<hash>`` that earlier versions
    registered in this environment are removed. Raises if another ``petool`` kernel (e.g. a stale
    ``~/.local/share/jupyter/kernels/petool`` of an older ``make kernel --user``) still shadows this one."""
    import shutil

    from jupyter_client.kernelspec import KernelSpecManager

    own = Path(sys.prefix) / "share" / "jupyter" / "kernels"
    for old in own.glob(f"{KERNEL}-*"):  # the former per-interpreter, hash-named kernels
        if re.fullmatch(rf"{KERNEL}-[0-9a-f]{{10}}", old.name) and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    specs = KernelSpecManager().find_kernel_specs()
    if KERNEL not in specs or not _same_environment(_kernel_python(specs[KERNEL])):
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL,
                        "--display-name", "Python (petool)"], check=True, capture_output=True)
        specs = KernelSpecManager().find_kernel_specs()
    found = specs.get(KERNEL)
    if found is None or not _same_environment(_kernel_python(found)):
        python = _kernel_python(found) if found else None
        raise RuntimeError(f"the Jupyter kernel {KERNEL!r} resolves to {found} ({python}), not to this environment "
                           f"({sys.executable}); remove that kernel (jupyter kernelspec remove {KERNEL}) or set "
                           "JUPYTER_PREFER_ENV_PATH=1, then rerun")
    return KERNEL


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
    if kernel in (None, KERNEL):  # the project's kernel: installed / checked to be this interpreter's
        kernel = ensure_kernel()
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
    ap.add_argument("--kernel", default=None,
                    help=f"Jupyter kernel name (default: {KERNEL}, installed in this environment if missing)")
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
