"""A pure-PyTorch stand-in for TRL's fused LM-head kernel, so TRL 1.15's SFT/DPO trainers run on CPU.

TRL 1.15 patches the model's forward with a "fused LM head" that computes per-token log-probs only at the labelled
positions through ``trl.kernels.ChunkedLogProbFunction``, a Triton kernel, held in
``trl.trainer.utils._ChunkedLogProbFunction``. TRL fills that slot whenever ``import triton`` succeeds and calls it
on whatever device the model is on. Two ways that breaks CPU training:

* the CPU wheel of PyTorch has no Triton: the slot is ``None`` and every step dies with
  ``AttributeError: 'NoneType' object has no attribute 'apply'``;
* Triton is installed anyway (e.g. pulled in by ``xgrammar``): the slot holds the Triton kernel, which cannot run on
  CPU tensors, and the first step dies with ``RuntimeError: 0 active drivers``.

So :func:`ensure_fused_lm_head` decides from the training *device*, not from whether the import succeeded: on CPU
(or without CUDA) it always installs :class:`TorchChunkedLogProb`, which computes the same five per-token outputs
with ordinary autograd-tracked torch ops, chunked over tokens; on CUDA it leaves TRL's Triton kernel in place (and
puts it back if this process installed the fallback earlier), using the fallback only when Triton is missing.
"""

from __future__ import annotations

from typing import Any

OUTPUT_NAMES = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


class TorchChunkedLogProb:
    """Same call signature and outputs as ``trl.kernels.ChunkedLogProbFunction.apply`` (plain torch, CPU-friendly)."""

    token_chunk = 1024

    @staticmethod
    def apply(
        hidden: Any,  # [N, H] hidden states at the labelled positions
        weight: Any,  # [V, H] LM head
        bias: Any,
        targets: Any,  # [N]
        temperature: float,
        chunk_size: int,  # vocabulary tile of the Triton kernel; unused here
        final_logit_softcapping: float | None = None,
        logit_scale: float = 1.0,
        outputs: tuple[str, ...] = OUTPUT_NAMES,
    ) -> tuple[Any, Any, Any, Any, Any]:
        import torch

        parts: dict[str, list[Any]] = {k: [] for k in ("log_probs", *OUTPUT_NAMES)}
        step = TorchChunkedLogProb.token_chunk
        for start in range(0, max(hidden.shape[0], 1), step):
            h = hidden[start:start + step]
            t = targets[start:start + step]
            logits = h.float() @ weight.float().t()
            if bias is not None:
                logits = logits + bias.float()
            logits = logits * logit_scale
            if final_logit_softcapping is not None:
                logits = final_logit_softcapping * torch.tanh(logits / final_logit_softcapping)
            logits = logits / temperature
            log_z = torch.logsumexp(logits, dim=-1)
            parts["log_probs"].append(logits.gather(-1, t.unsqueeze(-1)).squeeze(-1) - log_z)
            if "entropy" in outputs:
                parts["entropy"].append(log_z - (torch.softmax(logits, dim=-1) * logits).sum(-1))
            with torch.no_grad():
                if "log_sum_sq_probs" in outputs:
                    parts["log_sum_sq_probs"].append(torch.logsumexp(2 * logits, dim=-1) - 2 * log_z)
                if "mean_logits" in outputs:
                    parts["mean_logits"].append(logits.mean(-1))
                if "is_top1" in outputs:  # the target is the first arg-max (ties go to the lower index)
                    parts["is_top1"].append(logits.argmax(-1) == t)

        def cat(name: str) -> Any:
            if name != "log_probs" and name not in outputs:
                return None
            return torch.cat(parts[name]) if parts[name] else None

        return cat("log_probs"), cat("entropy"), cat("log_sum_sq_probs"), cat("mean_logits"), cat("is_top1")


_MISSING = object()
_triton_kernel: Any = _MISSING  # what TRL put in the slot, kept when the fallback replaces it (to restore on CUDA)


def ensure_fused_lm_head(device: str | None = None) -> bool:
    """Make TRL's fused LM head runnable on ``device`` (``cuda`` / ``cpu``; default: :func:`training_device`).

    Not CUDA (or CUDA unavailable): install :class:`TorchChunkedLogProb` in
    ``trl.trainer.utils._ChunkedLogProbFunction`` whatever TRL imported there. CUDA: keep TRL's Triton kernel
    (restoring it if the fallback had replaced it in this process); the fallback only if Triton is missing.
    Returns True when the torch fallback is the one in place."""
    global _triton_kernel
    import trl.trainer.utils as trl_utils

    from .backend import cuda_available, training_device

    device = training_device() if device is None else device
    current = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if current is not TorchChunkedLogProb:
        _triton_kernel = current  # TRL's own (the Triton kernel, or None without Triton)
    original = None if _triton_kernel is _MISSING else _triton_kernel
    on_cuda = str(device).split(":")[0] == "cuda" and cuda_available()
    if on_cuda and original is not None:
        trl_utils._ChunkedLogProbFunction = original
        return False
    trl_utils._ChunkedLogProbFunction = TorchChunkedLogProb
    return True
