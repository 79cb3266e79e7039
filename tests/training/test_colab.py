"""The Colab set-up: nothing happens elsewhere; on Colab, the GPU requirements and the repository are installed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from petool_lib.training import colab, colab_setup


def test_does_nothing_outside_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    assert colab_setup() is False


def test_installs_on_colab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: calls.append(cmd))
    monkeypatch.setitem(sys.modules, "google.colab", object())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert colab_setup(repo=tmp_path) is True
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "-r", str(tmp_path / "requirements-gpu.txt")],
                     [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(tmp_path)]]
    assert Path.cwd() == tmp_path and sys.path[0] == str(tmp_path)


def test_colab_module_needs_only_the_standard_library() -> None:
    """It runs right after ``git clone``, before anything is installed."""
    tree = ast.parse(Path(colab.__file__).read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= set(sys.stdlib_module_names) | {"__future__"}, mods
    r = subprocess.run([sys.executable, "-c", "import sys; from petool_lib.training import colab_setup; "
                        "print(sorted(m for m in sys.modules if m.startswith('petool_lib')))"],
                       capture_output=True, text=True, cwd=Path(colab.__file__).parents[2])
    assert r.stdout.strip() == "['petool_lib', 'petool_lib.training', 'petool_lib.training.colab']", r.stderr
