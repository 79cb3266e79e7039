"""The GPU-only Unsloth module, checked statically and with a stand-in ``unsloth`` (the real one needs CUDA), and
the import order it relies on: nothing in ``petool_lib.training`` imports trl / transformers / peft at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from petool_lib.training import (
    load_training_profile,
    stage_config,
    unsloth_installed,
    unsloth_load_kwargs,
    unsloth_peft_kwargs,
)
from petool_lib.training import unsloth as unsloth_backend

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "petool_lib" / "training"


def test_unsloth_module_is_static_and_lazy() -> None:
    src = (Path(unsloth_backend.__file__)).read_text()
    tree = ast.parse(src)
    compile(tree, "unsloth_backend.py", "exec")
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top_imports for a in n.names} | {n.module for n in top_imports if isinstance(n, ast.ImportFrom)}
    assert not names & {"unsloth", "trl", "transformers", "peft", "torch"}, names
    if "unsloth" not in sys.modules and unsloth_installed() is False:
        with pytest.raises(ImportError):
            unsloth_backend.import_unsloth()


class _FakeFastLanguageModel:
    calls: list[tuple[str, Any]] = []

    @classmethod
    def from_pretrained(cls, **kw: Any) -> tuple[Any, Any]:
        cls.calls.append(("from_pretrained", kw))
        tok = types.SimpleNamespace(pad_token=None, eos_token="</s>")
        model = types.SimpleNamespace(named_parameters=lambda: iter(()))
        return model, tok

    @classmethod
    def get_peft_model(cls, model: Any, **kw: Any) -> Any:
        cls.calls.append(("get_peft_model", kw))
        return model

    @classmethod
    def for_training(cls, model: Any) -> None:
        cls.calls.append(("for_training", None))


def test_unsloth_wiring_with_a_stand_in_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The calls the Unsloth path makes, recorded by a stand-in ``unsloth`` module (the real one needs CUDA)."""
    fake = types.ModuleType("unsloth")
    fake.FastLanguageModel = _FakeFastLanguageModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    _FakeFastLanguageModel.calls = []
    cfg = stage_config("paper", "sft")
    model, tok = unsloth_backend.load_for_sft("base-model", cfg, load_in_4bit=True, seed=7)
    assert tok.pad_token == "</s>"
    assert _FakeFastLanguageModel.calls == [
        ("from_pretrained", unsloth_load_kwargs("base-model", cfg, True)),
        ("get_peft_model", unsloth_peft_kwargs(cfg, 7)),
    ]
    _FakeFastLanguageModel.calls = []
    unsloth_backend.load_for_dpo("outputs/run/models/sft", stage_config("paper", "dpo"), load_in_4bit=True)
    assert [c[0] for c in _FakeFastLanguageModel.calls] == ["from_pretrained", "for_training"]
    assert _FakeFastLanguageModel.calls[0][1]["model_name"] == "outputs/run/models/sft"
    assert load_training_profile("paper").load_in_4bit is True


def test_training_modules_do_not_import_trl_transformers_peft_at_import_time() -> None:
    """Unsloth must be imported before trl/transformers/peft: importing our modules must not pull them in."""
    modules = sorted(f"petool_lib.training.{p.stem}" for p in TRAINING.glob("*.py") if p.stem != "__init__")
    assert "petool_lib.training.sft" in modules and "petool_lib.training.cli" in modules
    code = (f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; "
            "import petool_lib.training as T; T.select_backend('hf'); T.load_training_profile('paper'); "
            "bad = [m for m in ('trl', 'transformers', 'peft', 'unsloth', 'torch') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
