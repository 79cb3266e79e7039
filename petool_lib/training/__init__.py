"""Training: LoRA SFT, then DPO from the SFT policy (TRL trainers; CPU by default, Unsloth on a GPU).

The public API, loaded lazily: ``import petool_lib.training`` imports nothing, and a name imports only its module,
none of which imports torch / transformers / trl / peft at module level (on the Unsloth path ``unsloth`` must be
imported before them: call :func:`prepare_backend` first). Typical use (what notebooks 03-04 and the CLI do)::

    from petool_lib.training import load_training_profile, prepare_backend, stage_config, train_sft
    backend = prepare_backend("auto")
    profile = load_training_profile("cpu")                # configs/cpu.yaml's training: section, or a YAML path
    cfg = stage_config(profile, "sft", max_steps=10)
    res = train_sft("outputs/cpu/data", cfg, profile=profile, model="smollm2", out="outputs/cpu/models/sft",
                    backend=backend)

Modules: ``config`` (profiles from YAML, TRL/PEFT/Unsloth translation), ``backend`` (hf / unsloth, device,
loaders), ``rows`` (loading and fitting rows), ``contrast`` (contrast rows: the history's evidence flipped),
``runner`` (the steps both stages share), ``sft``, ``dpo``, ``checkpoints`` (resume, outputs), ``results``
(StageResult, metrics summary), ``monitor`` (tokens/s, memory), ``logps`` (reference check, preference margins),
``inspect`` (notebook helpers), ``unsloth`` (GPU path), ``trl_compat`` (CPU stand-in for TRL's Triton kernel),
``colab`` (Colab set-up), ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# module -> the public names it provides through this façade
_EXPORTS: dict[str, tuple[str, ...]] = {
    "config": ("STAGES", "PROFILE_NAMES", "LLAMA_PROJECTIONS", "TOO_LONG_POLICIES", "POLICY_ADAPTER", "REF_ADAPTER",
               "ProfileError", "LoraSpec", "StageConfig", "Profile", "profile_path", "load_training_profile",
               "stage_config", "to_dict", "precision", "sft_kwargs", "dpo_kwargs", "sft_config", "dpo_config",
               "lora_kwargs", "lora_config", "unsloth_load_kwargs", "unsloth_peft_kwargs"),
    "backend": ("BACKENDS", "BackendError", "cuda_available", "unsloth_installed", "select_backend",
                "prepare_backend", "training_device", "bf16_supported", "load_tokenizer", "load_base_model"),
    "rows": ("STAGE_FILES", "STAGE_COLUMNS", "validate_row", "load_rows", "official_rows", "count_tokens",
             "FitResult", "fit_row", "PrepStats", "balanced_order", "prepare_rows"),
    "contrast": ("FLIPPABLE_SETTINGS", "flip_row", "rejected_turns", "row_key"),
    "monitor": ("ResourceMonitor",),
    "logps": ("completion_logps", "reference_check", "sequence_logps", "preference_margins"),
    "inspect": ("sample_rows", "generate", "compare_samples", "free_memory", "plot_log_history"),
    "checkpoints": ("CHECKPOINTS", "to_jsonable", "run_fingerprint", "resume_point", "write_stage_outputs",
                    "remove_checkpoints"),
    "results": ("StageResult", "stage_summary", "record_stage"),
    "runner": ("StageRunner",),
    "sft": ("SFTRunner", "train_sft"),
    "dpo": ("DPORunner", "train_dpo", "adapter_state", "policy_only_dpo_trainer"),
    "colab": ("colab_setup",),
}
_ALIASES = {"colab_setup": "setup"}  # façade name -> name in its module
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), _ALIASES.get(name, name))
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from .backend import *  # noqa: F401,F403
    from .checkpoints import *  # noqa: F401,F403
    from .colab import setup as colab_setup  # noqa: F401
    from .config import *  # noqa: F401,F403
    from .dpo import *  # noqa: F401,F403
    from .inspect import *  # noqa: F401,F403
    from .logps import *  # noqa: F401,F403
    from .monitor import *  # noqa: F401,F403
    from .results import *  # noqa: F401,F403
    from .rows import *  # noqa: F401,F403
    from .runner import *  # noqa: F401,F403
    from .sft import *  # noqa: F401,F403
