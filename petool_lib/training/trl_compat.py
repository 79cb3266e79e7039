"""A pure-PyTorch stand-in for TRL's fused LM-head kernel, so TRL 1.15's SFT/DPO trainers run on CPU.

TRL 1.15 patches the model's forward with a "fused LM head" that computes per-token log-probs only at the labelled
positions through ``trl.kernels.ChunkedLogProbFunction``, a Triton kernel. Triton ships with the CUDA builds of
PyTorch only; on the CPU wheel the import fails, TRL sets ``trl.trainer.utils._ChunkedLogProbFunction = None`` and
every training step dies with ``AttributeError: 'NoneType' object has no attribute 'apply'``.

:func:`ensure_fused_lm_head` installs :class:`TorchChunkedLogProb` in that slot when (and only when) the Triton
kernel is missing. It computes the same five per-token outputs with ordinary autograd-tracked torch ops, chunked
over tokens. It is never used on a GPU machine with Triton.
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


def ensure_fused_lm_head() -> bool:
    """Install the torch fallback when TRL could not import its Triton kernel. Returns True if it did."""
    import trl.trainer.utils as trl_utils

    if getattr(trl_utils, "_ChunkedLogProbFunction", None) is None:
        trl_utils._ChunkedLogProbFunction = TorchChunkedLogProb
        return True
    return False
