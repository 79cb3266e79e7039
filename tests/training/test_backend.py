"""Backend selection (hf / unsloth), the device, and the hf path's loaders."""

from __future__ import annotations

import pytest

from petool_lib.training import BackendError, prepare_backend, select_backend, train_sft

from .helpers import tiny, tiny_stage


@pytest.mark.parametrize("requested,cuda,unsloth,expected", [
    ("hf", False, False, "hf"), ("hf", True, True, "hf"),
    ("auto", False, False, "hf"), ("auto", False, True, "hf"), ("auto", True, False, "hf"),
    ("auto", True, True, "unsloth"), ("unsloth", True, True, "unsloth"),
])
def test_select_backend(requested: str, cuda: bool, unsloth: bool, expected: str) -> None:
    assert select_backend(requested, cuda=cuda, unsloth=unsloth) == expected


def test_unsloth_backend_errors_are_clear() -> None:
    with pytest.raises(BackendError, match="needs a CUDA GPU"):
        select_backend("unsloth", cuda=False, unsloth=True)
    with pytest.raises(BackendError, match="requirements-gpu.txt"):
        select_backend("unsloth", cuda=True, unsloth=False)
    with pytest.raises(BackendError, match="unknown backend"):
        select_backend("vllm")


def test_this_machine_selects_hf_and_refuses_unsloth() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    assert select_backend("auto") == "hf"
    assert prepare_backend("auto") == prepare_backend("hf") == "hf"  # a resolved backend passes through
    with pytest.raises(BackendError, match="needs a CUDA GPU"):
        prepare_backend("unsloth")
    with pytest.raises(BackendError, match="needs a CUDA GPU"):
        train_sft("/nonexistent", tiny_stage("sft"), profile=tiny(), model="tiny", out="/nonexistent/out",
                  backend="unsloth")


def test_loaders_give_a_pad_token_and_fp32_on_cpu() -> None:
    import torch

    from petool_lib.core import resolve_model
    from petool_lib.training import load_base_model, load_tokenizer, training_device

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    assert training_device() == "cpu"
    path = resolve_model("tiny")
    tok = load_tokenizer(path)
    assert tok.pad_token is not None
    model = load_base_model(path, "cpu")
    assert next(model.parameters()).dtype == torch.float32
