"""The GPU-only Unsloth path: ``FastLanguageModel.from_pretrained`` + ``get_peft_model``, then TRL's trainers.

Unsloth patches transformers/TRL/PEFT when it is imported, so it must be imported before them:
``backend.prepare_backend`` calls :func:`import_unsloth` right after backend selection, before anything imports
trl (the SFT / DPO runners then call :func:`load_for_sft` / :func:`load_for_dpo`). Unsloth needs a CUDA GPU and
cannot be imported on CPU-only machines; the kwargs it receives are built by ``config.unsloth_load_kwargs`` /
``unsloth_peft_kwargs``, which the tests check without Unsloth.
"""

from __future__ import annotations

from typing import Any

from .config import StageConfig, unsloth_load_kwargs, unsloth_peft_kwargs


def import_unsloth() -> Any:
    """Import Unsloth (first, before trl/transformers/peft) and return ``FastLanguageModel``."""
    import unsloth  # noqa: F401  - must precede trl / transformers / peft

    from unsloth import FastLanguageModel

    return FastLanguageModel


def load_for_sft(model_name: str, cfg: StageConfig, load_in_4bit: bool, seed: int = 0) -> tuple[Any, Any]:
    """Base model (4-bit when asked) with a fresh LoRA adapter; TRL's SFTTrainer then gets no ``peft_config``."""
    fast = import_unsloth()
    model, tokenizer = fast.from_pretrained(**unsloth_load_kwargs(model_name, cfg, load_in_4bit))
    layers = int(model.config.num_hidden_layers) if cfg.lora.top_layers else None
    model = fast.get_peft_model(model, **unsloth_peft_kwargs(cfg, seed, layers))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_for_dpo(adapter_dir: str, cfg: StageConfig, load_in_4bit: bool) -> tuple[Any, Any]:
    """Base model + the SFT adapter, trainable. TRL's DPOTrainer adds the frozen ``ref`` copy itself."""
    fast = import_unsloth()
    model, tokenizer = fast.from_pretrained(**unsloth_load_kwargs(adapter_dir, cfg, load_in_4bit))
    fast.for_training(model)
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.requires_grad_(True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
