"""Every notebook is committed clean and runs under papermill with the tiny profile (the whole chain 01-06)."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from petool_lib.reproduce import NOTEBOOK_DIR, notebooks, reproduce

REPO = Path(__file__).resolve().parent.parent
EXPECTED = ["01_tool_preparation", "02_history_synthesis", "03_sft", "04_dpo", "05_evaluation", "06_error_analysis"]


def test_all_six_notebooks_exist():
    assert [p.stem for p in notebooks()] == EXPECTED


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_clean_with_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    assert "run_dir" in params[0].source
    r = subprocess.run([str(Path(sys.executable).parent / "nbstripout"), "--verify", str(path)], capture_output=True)
    assert r.returncode == 0, f"{path.name} is not nbstripout-clean: run `nbstripout notebooks/*.ipynb`"


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_kernelspec_is_the_projects_kernel(path):
    """The kernel the Makefile / reproduce registers (``petool``, "Python (petool)"), not the generic python3."""
    from petool_lib.reproduce import KERNEL

    spec = nbformat.read(path, as_version=4).metadata["kernelspec"]
    assert (spec["name"], spec["display_name"], spec["language"]) == (KERNEL, "Python (petool)", "python")


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill skips (and then calls 'unknown') any parameter line with a second '=' (e.g. in its comment)."""
    import ast

    import papermill

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    declared = {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    seen = set(papermill.inspect_notebook(str(path)))
    assert declared == seen, f"{path.name}: papermill cannot parse {sorted(declared - seen)}"


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_parameter_defaults_mirror_the_tiny_profile(path):
    """A notebook opened by hand runs like the test suite's tiny run: each parameter that configs/tiny.yaml sets
    has the same default in the parameters cell (run_dir aside), and every parameter is used by the notebook."""
    import ast

    import yaml

    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    nb = nbformat.read(path, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    rest = "\n".join(c for c in cells if c != params.source)
    for node in ast.parse(params.source).body:
        name = node.targets[0].id
        value = ast.literal_eval(node.value)
        if name in tiny:
            assert value == tiny[name], f"{path.name}: {name} = {value!r}, configs/tiny.yaml has {tiny[name]!r}"
        used = {n.id for n in ast.walk(ast.parse(rest)) if isinstance(n, ast.Name)}
        assert name in used, f"{path.name}: parameter {name} is declared but no cell uses it"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, official_path):  # the notebooks read the official test set: skip without it
    run_dir = tmp_path_factory.mktemp("reproduce") / "tiny"
    return reproduce(REPO / "configs" / "tiny.yaml", str(run_dir), kernel=None, progress=False)


def test_tiny_chain_runs_every_notebook(tiny_run):
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert [k for k, v in manifest["stages"].items() if v["status"] == "ok"] == EXPECTED
    assert Path(manifest["run"]).name == "tiny" and manifest["profile"].endswith("tiny.yaml") and manifest["packages"]["torch"]
    assert "commit" in manifest["git"]
    for stem in EXPECTED:
        assert (tiny_run / "notebooks" / f"{stem}.ipynb").is_file()
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert "official" in metrics["evaluation"]
    assert list((tiny_run / "figures").glob("*.png"))
    assert (tiny_run / "figures" / "06_models_picks_official.png").is_file()  # 06's pick view ran


def test_sft_notebook_starts_from_a_fresh_runtime(tmp_path, official_path):
    """Notebook 03 alone (no 01-02 outputs, as on a fresh Colab runtime) synthesizes its data with 02's call."""
    run = reproduce(REPO / "configs" / "tiny.yaml", str(tmp_path / "tiny"), only=["03"], kernel=None, progress=False)
    assert json.loads((run / "manifest.json").read_text())["stages"]["03_sft"]["status"] == "ok"
    assert (run / "data" / "sft.jsonl").is_file() and (run / "models" / "sft" / "adapter_config.json").is_file()
    assert "synthesizing them now" in (run / "notebooks" / "03_sft.ipynb").read_text()


def test_failing_notebook_fails_loudly(tmp_path, monkeypatch):
    import petool_lib.reproduce as rp

    bad = nbformat.v4.new_notebook()
    bad.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell("run_dir = ''\nprofile = ''")
    p.metadata["tags"] = ["parameters"]
    bad.cells = [p, nbformat.v4.new_code_cell("raise RuntimeError('boom')")]
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    nbformat.write(bad, nbdir / "01_bad.ipynb")
    monkeypatch.setattr(rp, "NOTEBOOK_DIR", nbdir)
    (tmp_path / "bad.yaml").write_text("profile: bad\n")
    with pytest.raises(Exception, match="boom"):
        rp.reproduce(tmp_path / "bad.yaml", str(tmp_path / "run"), progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed at 01_bad.ipynb" and manifest["stages"]["01_bad"]["status"] == "failed"


@pytest.mark.parametrize("name", ["tiny", "cpu", "cpu-long", "paper"])
def test_profiles_only_hold_parameters_some_notebook_declares(name):
    from petool_lib.reproduce import load_profile, split_parameters

    params = load_profile(REPO / "configs" / f"{name}.yaml") | {"run_dir": "x"}
    per_nb = split_parameters(params, notebooks(), f"{name}.yaml")
    assert set().union(*map(set, per_nb.values())) == set(params)
    assert per_nb[notebooks()[0]]["synth_train"] == params["synth_train"]
    assert "synth_train" not in per_nb[notebooks()[4]]  # 05 is not handed 01's parameters


def test_a_misspelt_profile_key_is_an_error_naming_it(tmp_path):
    profile = tmp_path / "typo.yaml"
    profile.write_text("profile: tiny\neval_limt: 3\n")
    with pytest.raises(ValueError, match=r"typo\.yaml.*eval_limt"):
        reproduce(profile, str(tmp_path / "run"), kernel="python3", progress=False)
