"""Colab set-up for notebooks 03-04: install the GPU stack (``requirements-gpu.txt``: Unsloth) and this repository.

Imported right after ``git clone``, before anything is installed, so it uses the standard library only (and
``petool_lib`` / ``petool_lib.training`` import nothing at package level). The notebooks' first cell::

    import os, sys
    if "google.colab" in sys.modules:  # Colab only: clone, then install (elsewhere `make reproduce` set up .venv)
        if not os.path.isdir("petool_lib"):
            os.path.isdir("petool") or os.system("git clone --depth 1 https://github.com/<org>/petool")
            os.chdir("petool")
        sys.path.insert(0, os.getcwd())
        from petool_lib.training import colab_setup; colab_setup()
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def in_colab() -> bool:
    return "google.colab" in sys.modules


def setup(repo: str | Path = REPO, requirements: str = "requirements-gpu.txt", force: bool = False) -> bool:
    """On Colab (or with ``force``): ``pip install -r requirements`` and ``pip install --no-deps -e repo``, with
    ``repo`` as the working directory and first on ``sys.path``. Elsewhere nothing happens. Returns whether it ran."""
    if not (force or in_colab()):
        return False
    repo = Path(repo)
    os.chdir(repo)
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(repo / requirements)], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(repo)], check=True)
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    return True
