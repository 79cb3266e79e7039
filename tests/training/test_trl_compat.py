"""TRL's fused LM head on CPU: the torch fallback is chosen from the training device, not from whether TRL could
import its Triton kernel (``triton`` arrives with e.g. ``xgrammar``, and the kernel then kills CPU training with
"0 active drivers")."""

from __future__ import annotations

from pathlib import Path

import pytest

import petool_lib.training.backend as backend
import petool_lib.training.trl_compat as tc
from petool_lib.training.trl_compat import TorchChunkedLogProb, ensure_fused_lm_head

from .helpers import BUDGET, tiny, tiny_stage


class FakeTritonKernel:
    """Stands for ``trl.kernels.ChunkedLogProbFunction`` imported fine; on CPU tensors it fails like Triton does."""

    calls = 0

    @staticmethod
    def apply(*args, **kwargs):
        FakeTritonKernel.calls += 1
        raise RuntimeError("0 active drivers ([]). There should only be one.")


@pytest.fixture
def slot(monkeypatch):
    """TRL's kernel slot holding a successfully imported (fake) Triton kernel; restored afterwards."""
    import trl.trainer.utils as trl_utils

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", FakeTritonKernel)
    monkeypatch.setattr(tc, "_triton_kernel", tc._MISSING)
    return trl_utils


def test_on_cpu_the_fallback_replaces_an_imported_triton_kernel(slot):
    assert ensure_fused_lm_head("cpu") is True
    assert slot._ChunkedLogProbFunction is TorchChunkedLogProb


def test_the_default_device_is_the_training_device(slot, monkeypatch):
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    assert ensure_fused_lm_head() is True and slot._ChunkedLogProbFunction is TorchChunkedLogProb


def test_on_cuda_the_triton_kernel_is_left_alone(slot, monkeypatch):
    monkeypatch.setattr(backend, "cuda_available", lambda: True)
    assert ensure_fused_lm_head("cuda") is False and slot._ChunkedLogProbFunction is FakeTritonKernel
    assert ensure_fused_lm_head("cuda:0") is False and slot._ChunkedLogProbFunction is FakeTritonKernel


def test_cuda_asked_for_without_cuda_gets_the_fallback(slot, monkeypatch):
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    assert ensure_fused_lm_head("cuda") is True and slot._ChunkedLogProbFunction is TorchChunkedLogProb


def test_cuda_after_cpu_in_one_process_gets_the_triton_kernel_back(slot, monkeypatch):
    monkeypatch.setattr(backend, "cuda_available", lambda: True)
    assert ensure_fused_lm_head("cpu") is True and slot._ChunkedLogProbFunction is TorchChunkedLogProb
    assert ensure_fused_lm_head("cuda") is False and slot._ChunkedLogProbFunction is FakeTritonKernel


def test_without_triton_the_fallback_is_used_on_any_device(slot, monkeypatch):
    monkeypatch.setattr(slot, "_ChunkedLogProbFunction", None)
    monkeypatch.setattr(backend, "cuda_available", lambda: True)
    assert ensure_fused_lm_head("cuda") is True and slot._ChunkedLogProbFunction is TorchChunkedLogProb
    assert ensure_fused_lm_head("cpu") is True and slot._ChunkedLogProbFunction is TorchChunkedLogProb


def test_the_fallback_matches_a_plain_log_softmax():
    import torch

    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(5, 8, generator=g), torch.randn(11, 8, generator=g)
    targets = torch.randint(0, 11, (5,), generator=g)
    lp, ent, lss, mean, top1 = TorchChunkedLogProb.apply(hidden, weight, None, targets, 0.7, 4096)
    logits = (hidden @ weight.t()) / 0.7
    ref = torch.log_softmax(logits, -1)
    torch.testing.assert_close(lp, ref.gather(-1, targets[:, None]).squeeze(-1))
    torch.testing.assert_close(ent, -(ref.exp() * ref).sum(-1))
    torch.testing.assert_close(lss, torch.log((ref.exp() ** 2).sum(-1)))
    torch.testing.assert_close(mean, logits.mean(-1))
    assert torch.equal(top1, logits.argmax(-1) == targets)


def test_cpu_training_survives_an_installed_triton(slot, data_dir: Path, tmp_path: Path, monkeypatch):
    """The runner passes its device: with the (fake) Triton kernel imported, a CPU SFT step still trains."""
    from petool_lib.training import train_sft

    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    FakeTritonKernel.calls = 0
    res = train_sft(data_dir, tiny_stage("sft", token_budget=BUDGET, max_examples=2, max_steps=1), profile=tiny(),
                    model="tiny", out=tmp_path / "sft", backend="hf")
    assert FakeTritonKernel.calls == 0 and slot._ChunkedLogProbFunction is TorchChunkedLogProb
    assert res.metrics["torch_lm_head_fallback"] is True and res.metrics["final_loss"] is not None
