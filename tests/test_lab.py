"""JupyterLab where users open the notebooks: ``make lab`` on the one ``petool`` kernel that ``make kernel``,
``make reproduce`` and the tests share (installed inside the venv), with jupyterlab and ipywidgets pinned."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

import petool_lib.reproduce as rp

REPO = Path(__file__).resolve().parents[1]


def _target(name: str) -> str:
    """The recipe line(s) and prerequisites of a Makefile target."""
    text = (REPO / "Makefile").read_text()
    m = re.search(rf"^{name}:(.*)\n((?:\t.*\n?)*)", text, re.M)
    assert m, f"Makefile has no {name!r} target"
    return m.group(1) + "\n" + m.group(2)


def test_make_lab_opens_the_notebooks_with_the_petool_kernel():
    lab = _target("lab")
    assert "kernel" in lab.split("\n")[0].split()  # installs / checks the kernel first
    assert "jupyter lab" in lab and "--notebook-dir=notebooks" in lab
    assert "default_kernel_name=petool" in lab
    assert re.search(r"^\.PHONY:.*\blab\b", (REPO / "Makefile").read_text(), re.M)


def test_one_kernel_name_everywhere():
    assert rp.KERNEL == "petool"
    kernel = _target("kernel")
    assert "ensure_kernel" in kernel and "--user" not in kernel  # the same function reproduce calls
    assert "--kernel petool" in _target("reproduce")
    assert "--sys-prefix" in Path(rp.__file__).read_text()  # installed inside the venv, never per user


def test_requirements_pin_jupyterlab_and_ipywidgets():
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    assert re.fullmatch(r"4\.\d+\.\d+", pins.get("jupyterlab", "")), pins
    assert re.fullmatch(r"8\.\d+\.\d+", pins.get("ipywidgets", "")), pins


def test_stale_hash_named_kernels_are_removed_and_petool_is_this_interpreter(tmp_path, monkeypatch):
    jupyter_client = pytest.importorskip("jupyter_client", reason="jupyter_client is not installed")
    pytest.importorskip("ipykernel", reason="ipykernel is not installed")
    prefix = tmp_path / "prefix"
    stale = prefix / "share" / "jupyter" / "kernels" / "petool-0123456789"
    keep = prefix / "share" / "jupyter" / "kernels" / "petool-mine"
    for d in (stale, keep):
        d.mkdir(parents=True)
        (d / "kernel.json").write_text(json.dumps({"argv": ["/nowhere/python"], "display_name": "x",
                                                   "language": "python"}))
    monkeypatch.setattr(rp.sys, "prefix", str(prefix))
    calls = []
    monkeypatch.setattr(rp.subprocess, "run", lambda *a, **k: calls.append(a))
    spec_dir = tmp_path / "petool"
    spec_dir.mkdir()
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel_launcher"]}))
    monkeypatch.setattr(jupyter_client.kernelspec.KernelSpecManager, "find_kernel_specs",
                        lambda self: {"petool": str(spec_dir)})
    assert rp.ensure_kernel() == "petool"
    assert not stale.exists() and keep.exists() and calls == []  # already this interpreter's: nothing installed


def test_a_petool_kernel_of_another_interpreter_is_an_error_naming_the_way_out(tmp_path, monkeypatch):
    jupyter_client = pytest.importorskip("jupyter_client", reason="jupyter_client is not installed")
    other = tmp_path / "petool"
    other.mkdir()
    (other / "kernel.json").write_text(json.dumps({"argv": ["/tmp/repro/.venv/bin/python", "-m", "x"]}))
    monkeypatch.setattr(rp.sys, "prefix", str(tmp_path / "prefix"))
    calls = []
    monkeypatch.setattr(rp.subprocess, "run", lambda *a, **k: calls.append(a[0]))
    monkeypatch.setattr(jupyter_client.kernelspec.KernelSpecManager, "find_kernel_specs",
                        lambda self: {"petool": str(other)})
    with pytest.raises(RuntimeError, match=r"jupyter kernelspec remove petool"):
        rp.ensure_kernel()
    assert calls and calls[0][1:] == ["-m", "ipykernel", "install", "--sys-prefix", "--name", "petool",
                                      "--display-name", "Python (petool)"]  # it tried to install its own first


def test_a_notebook_runs_on_the_petool_kernel(tmp_path):
    if shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
        pytest.skip(f"jupyter is not installed in {Path(sys.executable).parent} (make venv installs it)")
    pm = pytest.importorskip("papermill", reason="papermill is not installed")
    name = rp.ensure_kernel()  # as reproduce does
    assert name == "petool"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "petool", "display_name": "Python (petool)", "language": "python"}
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import sys, pathlib, ipywidgets, tqdm.auto\n"
        "for _ in tqdm.auto.tqdm(range(2)): pass\n"
        "pathlib.Path('out.txt').write_text(f'{sys.executable}|{x * 2}|{ipywidgets.__version__}')")]
    src = tmp_path / "tiny.ipynb"
    nbformat.write(nb, src)
    pm.execute_notebook(str(src), str(tmp_path / "tiny.out.ipynb"), parameters={"x": 21}, kernel_name=name,
                        cwd=str(tmp_path), progress_bar=False, log_output=False)
    python, value, widgets = (tmp_path / "out.txt").read_text().split("|")
    assert value == "42" and widgets.startswith("8.")
    assert Path(python).absolute().parent == Path(sys.executable).absolute().parent  # the venv's interpreter
