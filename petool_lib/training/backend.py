"""Where a stage trains: the backend (``hf`` = transformers + PEFT + TRL, or ``unsloth`` on a CUDA GPU), the device,
and the ``hf`` path's tokenizer and base-model loaders.

:func:`prepare_backend` is the one call to make first: it picks the backend and, for Unsloth, imports it before
anything imports trl / transformers / peft (Unsloth patches them on import). Heavy imports stay inside functions.
"""

from __future__ import annotations

import importlib.util
from typing import Any

BACKENDS: tuple[str, ...] = ("auto", "hf", "unsloth")


class BackendError(RuntimeError):
    """The requested training backend cannot run on this machine."""


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def unsloth_installed() -> bool:
    """Whether the ``unsloth`` package is installed (found without importing it)."""
    return importlib.util.find_spec("unsloth") is not None


def select_backend(requested: str = "auto", cuda: bool | None = None, unsloth: bool | None = None) -> str:
    """``auto`` → ``unsloth`` when a CUDA GPU is present and Unsloth is installed, else ``hf``.

    ``unsloth`` without a GPU (or without the package) raises :class:`BackendError` with the fix.
    """
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend {requested!r}; expected one of {BACKENDS}")
    if requested == "hf":
        return "hf"
    cuda = cuda_available() if cuda is None else cuda
    unsloth = unsloth_installed() if unsloth is None else unsloth
    if requested == "unsloth":
        if not cuda:
            raise BackendError("--backend unsloth needs a CUDA GPU and none is available; "
                               "use --backend hf (CPU) or auto")
        if not unsloth:
            raise BackendError("--backend unsloth: the unsloth package is not installed; "
                               "pip install -r requirements-gpu.txt (GPU machines only)")
        return "unsloth"
    return "unsloth" if (cuda and unsloth) else "hf"


def prepare_backend(requested: str = "auto") -> str:
    """Select the backend and, for Unsloth, import it now (before anything imports trl/transformers/peft).

    Idempotent: a resolved backend (``hf`` / ``unsloth``) is checked and returned as is.
    """
    backend = select_backend(requested)
    if backend == "unsloth":
        from . import unsloth as unsloth_backend

        unsloth_backend.import_unsloth()
    return backend


def training_device() -> str:
    """``cuda`` when a CUDA GPU is present, else ``cpu``."""
    return "cuda" if cuda_available() else "cpu"


def bf16_supported(device: str) -> bool:
    """Whether mixed precision can be bf16 on ``device`` (GPUs that support it; CPU autocast is the profile's choice)."""
    import torch

    return device == "cuda" and torch.cuda.is_bf16_supported()


def load_tokenizer(path: str) -> Any:
    """The tokenizer of a model or adapter directory, with a pad token (the EOS token when it has none)."""
    from ..core.models import load_tokenizer as load_model_tokenizer

    tok = load_model_tokenizer(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_base_model(path: str, device: str) -> Any:
    """The base causal LM for the ``hf`` backend: fp32 on CPU; bf16 (else fp16) on GPU, placed by ``device_map`` on
    this process's GPU (``LOCAL_RANK``: under ``accelerate launch`` / ``torchrun`` each rank trains on its own)."""
    import torch
    from transformers import AutoModelForCausalLM

    from .distributed import local_rank

    if device == "cuda":  # device_map also places pre-quantized (bitsandbytes) checkpoints, which .to() cannot move
        dtype = torch.bfloat16 if bf16_supported(device) else torch.float16
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map={"": local_rank()})
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def decoder_layers(model_or_path: Any) -> int | None:
    """The number of decoder layers (``num_hidden_layers``) of a loaded model or a model directory; None if unknown."""
    config = getattr(model_or_path, "config", None)
    if config is None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(model_or_path))
    config = getattr(config, "text_config", config)
    n = getattr(config, "num_hidden_layers", None)
    return int(n) if n else None
