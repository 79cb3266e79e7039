"""Stage 1, supervised fine-tuning: LoRA on all linear layers, loss on the assistant tool call only (TRL
prompt-completion format), cosine schedule. Output: one PEFT adapter on the base model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .backend import decoder_layers, load_base_model
from .config import Profile, StageConfig, lora_config, sft_config
from .results import StageResult
from .runner import StageRunner


class SFTRunner(StageRunner):
    """SFT from the base model: a fresh LoRA adapter (PEFT via TRL on ``hf``; Unsloth's ``get_peft_model`` on GPU)."""

    stage = "sft"

    def load_unsloth(self) -> tuple[Any, Any]:
        from . import unsloth as unsloth_backend

        return unsloth_backend.load_for_sft(self.base_path, self.cfg, self.profile.load_in_4bit, self.seed)

    def load_policy(self) -> Any:
        return load_base_model(self.base_path, self.device)

    def trainer_parts(self, args: dict[str, Any]) -> tuple[type, Any, dict[str, Any]]:
        from trl import SFTTrainer

        peft_config = None  # Unsloth: the adapter exists already
        if self.backend != "unsloth":
            layers = decoder_layers(self.base_path) if self.cfg.lora.top_layers else None
            peft_config = lora_config(self.cfg.lora, layers)
        return SFTTrainer, sft_config(self.cfg, **args), {"peft_config": peft_config}


def train_sft(data: str | Path, cfg: StageConfig, *, profile: Profile, model: str, out: str | Path,
              backend: str = "auto", seed: int = 0, resume: bool = True, callbacks: Sequence[Any] = (),
              keep_checkpoints: bool = False) -> StageResult:
    """LoRA SFT on ``data`` (``sft.jsonl``; see ``rows.load_rows``) with the resolved stage config ``cfg`` of
    ``profile``. ``out`` is the adapter directory; an interrupted run resumes from ``out/checkpoints``."""
    return SFTRunner(data, cfg, profile=profile, model=model, out=out, backend=backend, seed=seed, resume=resume,
                     callbacks=callbacks, keep_checkpoints=keep_checkpoints).run()
