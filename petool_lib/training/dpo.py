"""Stage 2, DPO from the SFT adapter. The reference model is the SFT policy: a frozen copy of the adapter, named
``ref``, inside the same PeftModel (TRL adds it when given a PEFT model and no ``ref_model``); sigmoid loss, beta
0.1. Before training, policy and reference log-probs of the first pairs must be equal (reward margin 0); after it,
the ``ref`` adapter must be unchanged. Output: ONE adapter (SFT+DPO) on the base model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .backend import load_base_model, load_tokenizer
from .config import POLICY_ADAPTER, REF_ADAPTER, Profile, StageConfig, dpo_config
from .logps import reference_check
from .results import StageResult
from .runner import StageRunner


def adapter_state(model: Any, adapter: str) -> dict[str, Any]:
    """The LoRA tensors of one adapter of a PeftModel, keyed without the adapter name."""
    tag = f".{adapter}."
    return {k.replace(tag, "."): v.detach().clone() for k, v in model.named_parameters() if tag in k}


def policy_only_dpo_trainer() -> type:
    """DPOTrainer whose checkpoints hold only the trained adapter (the ``ref`` copy is rebuilt from the SFT one).

    Needed for resuming: transformers' checkpoint loader, seeing an adapter sub-folder (``ref/``), would load
    only the sub-folders and never restore the trained ``default`` adapter.
    """
    import os

    import torch
    from trl import DPOTrainer

    class PolicyOnlyDPOTrainer(DPOTrainer):
        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            model = self.accelerator.unwrap_model(self.model)
            if REF_ADAPTER not in getattr(model, "peft_config", {}):
                return super()._save(output_dir, state_dict)
            output_dir = output_dir if output_dir is not None else self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            model.save_pretrained(output_dir, selected_adapters=[POLICY_ADAPTER])
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    return PolicyOnlyDPOTrainer


class DPORunner(StageRunner):
    """DPO from the SFT adapter ``adapter`` (trainable), with its frozen ``ref`` copy as the reference."""

    stage = "dpo"
    _ref_before: dict[str, Any] = {}  # the "ref" adapter's tensors when training starts

    def check_inputs(self) -> None:
        if self.adapter is None or not (self.adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{self.adapter}: not a PEFT adapter directory (no adapter_config.json); "
                                    "run the SFT stage first")

    def load_unsloth(self) -> tuple[Any, Any]:
        from . import unsloth as unsloth_backend

        return unsloth_backend.load_for_dpo(str(self.adapter), self.cfg, self.profile.load_in_4bit)

    def load_tokenizer(self) -> Any:
        return load_tokenizer(str(self.adapter))

    def load_policy(self) -> Any:
        from peft import PeftModel

        return PeftModel.from_pretrained(load_base_model(self.base_path, self.device), str(self.adapter),
                                         is_trainable=True)

    def trainer_parts(self, args: dict[str, Any]) -> tuple[type, Any, dict[str, Any]]:
        # a PEFT model and no ref_model: TRL adds a frozen "ref" copy of the SFT adapter
        return policy_only_dpo_trainer(), dpo_config(self.cfg, **args), {"ref_model": None}

    def before_training(self, trainer: Any) -> dict[str, Any]:
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        if REF_ADAPTER not in unwrapped.peft_config:
            raise RuntimeError("DPOTrainer did not create the frozen 'ref' adapter: the reference would not be the "
                               "SFT policy")
        self._ref_before = adapter_state(unwrapped, REF_ADAPTER)
        check = reference_check(trainer)
        if not check["equal"]:
            raise RuntimeError(f"policy and reference differ before DPO training: {check}")
        return {"step0_reference_check": check}

    def after_training(self, trainer: Any) -> dict[str, Any]:
        ref_after = adapter_state(trainer.accelerator.unwrap_model(trainer.model), REF_ADAPTER)
        unchanged = all(bool((self._ref_before[k] == ref_after[k]).all()) for k in self._ref_before)
        if not unchanged:
            raise RuntimeError("the frozen reference adapter changed during DPO training")
        return {"reference_unchanged": unchanged, "beta": self.cfg.beta, "loss_type": self.cfg.loss_type,
                "sft_weight": self.cfg.sft_weight}


def train_dpo(data: str | Path, cfg: StageConfig, *, adapter: str | Path, profile: Profile, model: str,
              out: str | Path, backend: str = "auto", seed: int = 0, resume: bool = True,
              callbacks: Sequence[Any] = (), keep_checkpoints: bool = False) -> StageResult:
    """DPO on ``data`` (``dpo.jsonl``) from the SFT adapter ``adapter``, with the SFT policy as the frozen reference,
    using the resolved stage config ``cfg`` of ``profile``. ``out`` gets ONE adapter (SFT+DPO)."""
    return DPORunner(data, cfg, profile=profile, model=model, out=out, backend=backend, seed=seed, resume=resume,
                     callbacks=callbacks, keep_checkpoints=keep_checkpoints, adapter=adapter).run()
