"""Stage 1, supervised fine-tuning: LoRA on all linear layers, loss on the assistant tool call only (TRL
prompt-completion format), cosine schedule. Output: one PEFT adapter on the base model.

With ``adapter`` the stage continues training an existing adapter instead of starting a fresh one (the second phase
of a curriculum: e.g. the rows whose answer the history shows, then the rows where it must be avoided); the adapter's
own LoRA shape (rank, layers) is kept and the stage's ``lora`` block is not used. ``hf`` backend only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .backend import BackendError, decoder_layers, load_base_model
from .config import Profile, StageConfig, lora_config, sft_config
from .results import StageResult
from .runner import StageRunner


class SFTRunner(StageRunner):
    """SFT from the base model: a fresh LoRA adapter (PEFT via TRL on ``hf``; Unsloth's ``get_peft_model`` on GPU),
    or, with ``adapter``, more SFT of that adapter (``hf`` only)."""

    stage = "sft"

    def check_inputs(self) -> None:
        if self.adapter is None:
            return
        if not (self.adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{self.adapter}: not a PEFT adapter directory (no adapter_config.json); SFT "
                                    "continues only from an adapter a stage wrote")
        if self.backend == "unsloth":
            raise BackendError(f"{self.adapter}: continuing SFT from an adapter runs on the hf backend only "
                               "(--backend hf)")

    def load_unsloth(self) -> tuple[Any, Any]:
        from . import unsloth as unsloth_backend

        return unsloth_backend.load_for_sft(self.base_path, self.cfg, self.profile.load_in_4bit, self.seed)

    def load_policy(self) -> Any:
        base = load_base_model(self.base_path, self.device)
        if self.adapter is None:
            return base
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(self.adapter), is_trainable=True)

    def trainer_parts(self, args: dict[str, Any]) -> tuple[type, Any, dict[str, Any]]:
        from trl import SFTTrainer

        peft_config = None  # Unsloth, or continuing an adapter: the adapter exists already
        if self.backend != "unsloth" and self.adapter is None:
            layers = decoder_layers(self.base_path) if self.cfg.lora.top_layers else None
            peft_config = lora_config(self.cfg.lora, layers)
        return SFTTrainer, sft_config(self.cfg, **args), {"peft_config": peft_config}


def train_sft(data: str | Path, cfg: StageConfig, *, profile: Profile, model: str, out: str | Path,
              backend: str = "auto", seed: int = 0, resume: bool = True, callbacks: Sequence[Any] = (),
              keep_checkpoints: bool = False, adapter: str | Path | None = None) -> StageResult:
    """LoRA SFT on ``data`` (``sft.jsonl``; see ``rows.load_rows``) with the resolved stage config ``cfg`` of
    ``profile``. ``out`` is the adapter directory; an interrupted run resumes from ``out/checkpoints``. ``adapter``:
    continue training that adapter (on ``model``, its base) instead of a fresh one."""
    return SFTRunner(data, cfg, profile=profile, model=model, out=out, backend=backend, seed=seed, resume=resume,
                     callbacks=callbacks, keep_checkpoints=keep_checkpoints, adapter=adapter).run()
