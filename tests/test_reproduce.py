"""reproduce writes its table to outputs/<run>/results.md and never the README; `make readme` (reproduce --no-run
--readme) is the explicit step that copies a finished run's table into it. The manifest records the machine."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

import petool_lib.reproduce as rp
from petool_lib.reporting.report import README_END, README_START, readme_block

REPO = Path(__file__).resolve().parents[1]
SUMMARY = {"tool_acc": 0.175, "param_acc": 0.475, "n": 1000, "tool_correct": 175}
METRICS = {"evaluation": {"official": {"baseline-functional": {"paper": {"preferred": SUMMARY}}}}}
NB_BODY = f"import json, pathlib\n(pathlib.Path(run_dir) / 'metrics.json').write_text(json.dumps({METRICS!r}))\n"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reproduce")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("run_dir = ''\nprofile = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(NB_BODY)]
    (root / "nbs").mkdir()
    nbformat.write(nb, root / "nbs" / "01_eval.ipynb")
    (root / "p.yaml").write_text("profile: p\ntraining:\n  sft:\n    bf16: true\n")
    readme_before = (REPO / "README.md").read_bytes()
    mp = pytest.MonkeyPatch()
    mp.setattr(rp, "NOTEBOOK_DIR", root / "nbs")
    try:
        assert rp.main(["--profile", str(root / "p.yaml"), "--run", str(root / "run")]) == 0
    finally:
        mp.undo()
    assert (REPO / "README.md").read_bytes() == readme_before  # the main job leaves the checkout alone
    return root / "run"


def _readme(tmp_path: Path) -> Path:
    p = tmp_path / "README.md"
    p.write_text(f"# x\n\n{README_START}\nold table\n{README_END}\n\nafter\n")
    return p


def test_reproduce_writes_results_md_and_records_the_machine(finished_run):
    results = (finished_run / rp.RESULTS).read_text()
    assert results == readme_block(finished_run) + "\n" and "| baseline-functional | 17.5 |" in results
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert manifest["library_sections"] == {"training": {"sft": {"bf16": True}}}  # the training dtype, compared too
    env = manifest["environment"]
    assert {"cpu", "torch", "env", "dtype", "embeddings", "packages"} <= set(env)
    assert env["cpu"]["model"] and "threads" in env["torch"] and env["dtype"]["embeddings"] == "float32"


def test_make_readme_copies_a_finished_runs_table(finished_run, tmp_path, capsys):
    readme = _readme(tmp_path)
    assert rp.main(["--run", str(finished_run), "--no-run", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and (finished_run / rp.RESULTS).read_text().strip() in text
    assert text.endswith("after\n") and "updated results table" in capsys.readouterr().out


def test_readme_refuses_an_unfinished_run_and_a_readme_without_markers(finished_run, tmp_path, capsys):
    run = tmp_path / "failed"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"status": "failed at 05_evaluation.ipynb"}))
    readme = _readme(tmp_path)
    before = readme.read_text()
    assert rp.main(["--run", str(run), "--no-run", "--readme", str(readme)]) == 2
    assert readme.read_text() == before and "not a finished run" in capsys.readouterr().err
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    assert rp.main(["--run", str(finished_run), "--no-run", "--readme", str(bare)]) == 2
    assert bare.read_text() == "no markers\n"
    with pytest.raises(SystemExit):
        rp.main(["--run", str(finished_run), "--no-run"])  # --no-run alone does nothing: a usage error


def test_makefile_reproduce_never_touches_the_readme_and_readme_is_its_own_target():
    make = (REPO / "Makefile").read_text()
    recipe = re.search(r"^reproduce:.*?\n((?:\t.*\n)+)", make, re.M)
    assert recipe and "README" not in recipe.group(1) and "--readme" not in recipe.group(1)
    readme = re.search(r"^readme:.*?\n((?:\t.*\n)+)", make, re.M)
    assert readme and "--no-run --readme README.md" in readme.group(1)
    assert "make readme" in make and re.search(r"^\.PHONY:.*\breadme\b", make, re.M)


def _dry_run(*args: str, env: dict[str, str] | None = None) -> str:
    """``make -n`` of the given target and variables in the repository (prints the recipe, runs nothing)."""
    import os
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    environ = {k: v for k, v in os.environ.items() if k not in ("PROFILE", "SETTING", "LABEL", "MAKEFLAGS")}
    out = subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, check=True,
                         env={**environ, **(env or {})})
    return out.stdout


def test_make_eval_full_takes_the_profile_only_when_one_is_given():
    plain = _dry_run("eval-full")
    assert "petool_lib predict --model smollm2" in plain and "--profile" not in plain and "--setting all" in plain
    named = _dry_run("eval-full", "PROFILE=cpu-long", "ADAPTER=outputs/cpu-long/models/dpo", "LABEL=long",
                     "SETTING=ratings")
    assert "--profile cpu-long" in named and "--adapter outputs/cpu-long/models/dpo" in named
    assert "--setting ratings" in named and "--out outputs/eval-full/long.jsonl" in named
    assert "--profile cpu-long" in _dry_run("eval-full", env={"PROFILE": "cpu-long"})


def test_make_eval_full_default_label_names_the_profile_and_the_setting():
    assert "--out outputs/eval-full/smollm2.jsonl" in _dry_run("eval-full")
    ratings = _dry_run("eval-full", "PROFILE=cpu-long", "ADAPTER=outputs/cpu-long/models/dpo", "SETTING=ratings")
    assert "--out outputs/eval-full/smollm2+dpo@cpu-long_ratings.jsonl" in ratings
    assert "--metrics outputs/eval-full/smollm2+dpo@cpu-long_ratings.metrics.json" in ratings
    chrono = _dry_run("eval-full", "ADAPTER=x/dpo", "SETTING=chronological", env={"PROFILE": "cpu"})
    assert "--out outputs/eval-full/smollm2+dpo@cpu_chronological.jsonl" in chrono
