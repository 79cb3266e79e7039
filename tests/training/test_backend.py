"""Backend selection, profile → TRL/PEFT/Unsloth translation, and the GPU-only Unsloth module (checked statically:
Unsloth cannot be imported on CPU-only machines)."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from petool_lib.training import train as T
from petool_lib.training import unsloth as unsloth_backend
from petool_lib.training.config import (
    LLAMA_PROJECTIONS,
    PROFILES,
    dpo_config,
    dpo_kwargs,
    lora_kwargs,
    precision,
    sft_config,
    sft_kwargs,
    stage_config,
    unsloth_load_kwargs,
    unsloth_peft_kwargs,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("requested,cuda,unsloth,expected", [
    ("hf", False, False, "hf"), ("hf", True, True, "hf"),
    ("auto", False, False, "hf"), ("auto", False, True, "hf"), ("auto", True, False, "hf"),
    ("auto", True, True, "unsloth"), ("unsloth", True, True, "unsloth"),
])
def test_select_backend(requested: str, cuda: bool, unsloth: bool, expected: str) -> None:
    assert T.select_backend(requested, cuda=cuda, unsloth=unsloth) == expected


def test_unsloth_backend_errors_are_clear() -> None:
    with pytest.raises(T.BackendError, match="needs a CUDA GPU"):
        T.select_backend("unsloth", cuda=False, unsloth=True)
    with pytest.raises(T.BackendError, match="requirements-gpu.txt"):
        T.select_backend("unsloth", cuda=True, unsloth=False)
    with pytest.raises(T.BackendError, match="unknown backend"):
        T.select_backend("vllm")


def test_this_machine_selects_hf_and_refuses_unsloth() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    assert T.select_backend("auto") == "hf"
    with pytest.raises(T.BackendError, match="needs a CUDA GPU"):
        T.train_sft("/nonexistent", model="tiny", out="/nonexistent/out", profile="tiny", backend="unsloth")


def test_paper_profile_is_the_reference_config() -> None:
    sft, dpo = PROFILES["paper"].sft, PROFILES["paper"].dpo
    assert (sft.lora.r, sft.learning_rate, sft.epochs, sft.batch_size, sft.grad_accum, sft.warmup_ratio,
            sft.token_budget, sft.scheduler) == (8, 1e-4, 1, 2, 8, 0.1, 4096, "cosine")
    assert (dpo.lora.r, dpo.beta, dpo.learning_rate, dpo.epochs, dpo.batch_size, dpo.grad_accum, dpo.loss_type) == (
        8, 0.1, 5e-6, 1, 1, 32, "sigmoid")
    assert sft.lora.target_modules == dpo.lora.target_modules == "all-linear"


def test_translation_to_trl_configs(tmp_path: Path) -> None:
    cfg = stage_config("paper", "sft")
    kw = sft_kwargs(cfg, str(tmp_path), seed=3, device="cuda", bf16_supported=True)
    assert kw["completion_only_loss"] is True and kw["max_length"] is None and kw["packing"] is False
    assert (kw["learning_rate"], kw["per_device_train_batch_size"], kw["gradient_accumulation_steps"],
            kw["num_train_epochs"], kw["warmup_steps"], kw["lr_scheduler_type"], kw["max_steps"]) == (
        1e-4, 2, 8, 1, 0.1, "cosine", -1)
    assert kw["bf16"] is True and kw["fp16"] is False and kw["use_cpu"] is False and kw["seed"] == 3
    dkw = dpo_kwargs(stage_config("paper", "dpo", max_steps=7), str(tmp_path), device="cpu")
    assert dkw["beta"] == 0.1 and dkw["loss_type"] == ["sigmoid"] and dkw["max_steps"] == 7
    assert dkw["use_cpu"] is True and dkw["bf16"] is False and dkw["precompute_ref_log_probs"] is False
    # the objects really construct with the installed TRL (on CPU)
    sc = sft_config(stage_config("tiny", "sft"), str(tmp_path / "s"))
    dc = dpo_config(stage_config("cpu", "dpo"), str(tmp_path / "d"))
    assert sc.completion_only_loss and sc.lr_scheduler_type.value == "cosine" and not sc.gradient_checkpointing
    assert dc.beta == 0.1 and dc.loss_type == ["sigmoid"] and dc.bf16 is True  # cpu profile: bf16 autocast


def test_precision_flags() -> None:
    gpu = stage_config("paper", "sft")
    assert precision(gpu, "cuda", bf16_supported=True) == (True, False)
    assert precision(gpu, "cuda", bf16_supported=False) == (False, True)  # e.g. T4: fp16
    assert precision(gpu, "cpu") == (False, False)
    assert precision(stage_config("cpu", "sft"), "cpu") == (True, False)


def test_unsloth_kwargs_match_the_hf_lora() -> None:
    cfg = stage_config("paper", "sft")
    hf = lora_kwargs(cfg.lora)
    assert hf == {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear", "bias": "none",
                  "task_type": "CAUSAL_LM"}
    us = unsloth_peft_kwargs(cfg, seed=5)
    assert (us["r"], us["lora_alpha"], us["lora_dropout"], us["bias"]) == (8, 16, 0.0, "none")
    assert us["target_modules"] == list(LLAMA_PROJECTIONS)
    assert us["use_gradient_checkpointing"] == "unsloth" and us["random_state"] == 5 and us["max_seq_length"] == 4096
    load = unsloth_load_kwargs("unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit", cfg, PROFILES["paper"].load_in_4bit)
    assert load == {"model_name": "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit", "max_seq_length": 4096,
                    "dtype": None, "load_in_4bit": True}
    custom = stage_config("paper", "sft", lora={"target_modules": ("q_proj", "v_proj")})
    assert unsloth_peft_kwargs(custom)["target_modules"] == ["q_proj", "v_proj"]
    assert unsloth_peft_kwargs(stage_config("cpu", "sft"))["use_gradient_checkpointing"] is False


def test_unsloth_module_is_static_and_lazy() -> None:
    src = (Path(unsloth_backend.__file__)).read_text()
    tree = ast.parse(src)
    compile(tree, "unsloth_backend.py", "exec")
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in top_imports for a in n.names} | {n.module for n in top_imports if isinstance(n, ast.ImportFrom)}
    assert not names & {"unsloth", "trl", "transformers", "peft", "torch"}, names
    if "unsloth" not in sys.modules and T.unsloth_installed() is False:
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


def test_training_modules_do_not_import_trl_transformers_peft_at_import_time() -> None:
    """Unsloth must be imported before trl/transformers/peft: importing our modules must not pull them in."""
    code = ("import sys; import petool_lib.training.train, petool_lib.training.config, petool_lib.training.unsloth; "
            "petool_lib.training.train.select_backend('hf'); "
            "bad = [m for m in ('trl', 'transformers', 'peft', 'unsloth') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
