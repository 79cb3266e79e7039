"""The ``petool_lib.training`` façade: every public name, loaded lazily, without torch / trl / transformers / peft."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import petool_lib.training as T

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "trl", "transformers", "peft", "unsloth")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)


def test_importing_the_facade_imports_no_module_of_it_and_nothing_heavy() -> None:
    r = _run("import sys; import petool_lib.training; "
             f"loaded = [m for m in sys.modules if m.startswith('petool_lib.training.') or m in {HEAVY!r}]; "
             "print(loaded); sys.exit(1 if loaded else 0)")
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_public_name_loads_without_heavy_imports() -> None:
    r = _run("import sys; from petool_lib.training import *; import petool_lib.training as T; "
             "g = globals(); missing = [n for n in T.__all__ if n not in g]; "
             f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; "
             "print(missing, heavy); sys.exit(1 if missing or heavy else 0)")
    assert r.returncode == 0, r.stdout + r.stderr


def test_names_come_from_their_modules() -> None:
    from petool_lib.training import colab, config, dpo, rows, sft

    assert T.train_sft is sft.train_sft and T.train_dpo is dpo.train_dpo
    assert T.load_rows is rows.load_rows and T.StageConfig is config.StageConfig
    assert T.colab_setup is colab.setup
    assert len(T.__all__) == len(set(T.__all__)) and set(T.__all__) <= set(dir(T))
    with pytest.raises(AttributeError, match="no attribute 'train'"):
        T.train  # noqa: B018 - the old flat module is gone


def test_the_old_flat_module_is_gone() -> None:
    assert not (REPO / "petool_lib" / "training" / "train.py").exists()
    with pytest.raises(ImportError):
        __import__("petool_lib.training.train")
