"""The package's architecture, checked: one façade per stage, notebooks use only façades, imports only go down."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import nbformat
import pytest

import petool_lib

PKG = Path(petool_lib.__file__).parent
REPO = PKG.parent
STAGES = ("core", "harness", "synthesis", "training", "inference", "reporting", "benchmarks")
# stage -> the stages it may import from (besides itself); ``reproduce`` and ``cli`` sit on top
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "harness": {"core"},
    "synthesis": {"core", "harness"},
    "training": {"core", "harness"},
    "inference": {"core", "harness"},
    "reporting": {"core", "harness", "inference"},
    "benchmarks": {"core", "harness", "inference", "training", "reporting"},
}


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "resources" not in p.parts)


def _imported_stages(path: Path) -> set[str]:
    """petool_lib stages a module imports (absolute or relative, top level or inside functions)."""
    parts = path.relative_to(REPO).with_suffix("").parts  # ("petool_lib", stage, module) or ("petool_lib", module)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[: len(parts) - node.level])
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [mod + "." + a.name for a in node.names] if not node.module else [mod]
            elif node.module:
                names = [node.module] + [node.module + "." + a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            bits = n.split(".")
            if bits[0] == "petool_lib" and len(bits) > 1 and bits[1] in STAGES:
                found.add(bits[1])
    return found


def test_every_stage_is_a_package_with_a_facade():
    for stage in STAGES:
        mod = importlib.import_module(f"petool_lib.{stage}")
        names = getattr(mod, "__all__", None)
        assert names, f"petool_lib.{stage} has no __all__"
        assert len(names) == len(set(names)), f"petool_lib.{stage}.__all__ repeats a name"
        missing = [n for n in names if not hasattr(mod, n)]
        assert not missing, f"petool_lib.{stage}.__all__ names {missing}, which it does not define"


def test_no_flat_modules_left():
    flat = sorted(p.name for p in PKG.glob("*.py")) 
    assert flat == ["__init__.py", "__main__.py", "cli.py", "reproduce.py"], flat


@pytest.mark.parametrize("stage", STAGES)
def test_imports_only_go_down(stage):
    bad = {}
    for path in sorted((PKG / stage).rglob("*.py")):
        extra = _imported_stages(path) - ALLOWED[stage] - {stage}
        if extra:
            bad[str(path.relative_to(REPO))] = sorted(extra)
    assert not bad, f"{stage} may import only {sorted(ALLOWED[stage])}: {bad}"


def test_the_layer_check_sees_relative_and_lazy_imports(tmp_path):
    """The checker itself: a function-level relative import of a higher stage is found."""
    p = PKG / "core" / "_layer_probe.py"
    try:
        p.write_text("def f():\n    from ..inference import predict\n    from . import data\n")
        assert _imported_stages(p) == {"inference", "core"}
    finally:
        p.unlink()


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_import_only_facades(path):
    nb = nbformat.read(path, as_version=4)
    bad = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            mods = []
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            for m in mods:
                bits = m.split(".")
                if bits[0] == "petool_lib" and (len(bits) != 2 or bits[1] not in STAGES):
                    bad.append(m)
    assert not bad, f"{path.name} imports {bad}; notebooks import from petool_lib.<stage> façades only"
