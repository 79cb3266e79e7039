"""The steps every training stage shares, in order: backend (Unsloth imported first), rows fitted to the token
budget, resume point, monitor, ``trainer.train()``, outputs. :class:`StageRunner` runs them; the SFT and DPO
runners (``sft.py``, ``dpo.py``) supply only what differs: how the model is loaded, which TRL trainer, and checks
around training.

Under ``accelerate launch`` / ``torchrun`` every process runs the whole stage and trains (DDP / DeepSpeed); only the
main process prepares the checkpoint folder and writes the stage's files (see ``distributed.py``).

It takes resolved objects — a :class:`StageConfig`, a :class:`Profile` (model-loading choices, the name recorded)
and a backend from :func:`prepare_backend` — so callers (the CLI, the notebooks) resolve a profile once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from ..core.data import DataError
from .backend import bf16_supported, load_tokenizer, prepare_backend, training_device
from .checkpoints import CHECKPOINTS, remove_checkpoints, resume_point, run_fingerprint, write_stage_outputs
from .config import Profile, StageConfig, check_report_to, to_dict
from .contrast import rejected_turns
from .distributed import init_distributed, main_first, on_main
from .monitor import ResourceMonitor
from .results import StageResult
from .rows import PrepStats, load_rows, prepare_rows


class StageRunner:
    """One training stage. Subclasses set :attr:`stage` and implement the ``load_*`` / :meth:`trainer_parts` hooks.

    ``out`` is the adapter directory; ``backend`` is ``hf`` / ``unsloth`` as :func:`prepare_backend` returned it
    (``auto`` is resolved here too); ``adapter`` is the SFT adapter a DPO stage starts from.
    """

    stage = ""

    def __init__(self, data: str | Path, cfg: StageConfig, *, profile: Profile, model: str, out: str | Path,
                 backend: str = "auto", seed: int = 0, resume: bool = True, callbacks: Sequence[Any] = (),
                 keep_checkpoints: bool = False, adapter: str | Path | None = None) -> None:
        if not isinstance(cfg, StageConfig):
            raise TypeError(f"cfg must be a StageConfig (stage_config(profile, {self.stage!r}, ...)), got {cfg!r}")
        if not isinstance(profile, Profile):
            raise TypeError(f"profile must be a Profile (load_training_profile(name_or_path)), got {profile!r}")
        self.data, self.cfg, self.profile, self.model = data, cfg, profile, model
        self.out, self.backend, self.seed, self.resume = Path(out), backend, seed, resume
        self.callbacks, self.keep_checkpoints = list(callbacks or ()), keep_checkpoints
        self.adapter = Path(adapter) if adapter is not None else None
        self.device = ""
        self.base_path = ""
        self.world: dict[str, Any] = {"world_size": 1, "rank": 0, "local_rank": 0}

    # --- what a stage supplies ----------------------------------------------------------------------------------

    def check_inputs(self) -> None:
        """Fail before anything heavy loads (e.g. DPO without an SFT adapter)."""

    def load_unsloth(self) -> tuple[Any, Any]:
        """Unsloth backend: (trainable model, tokenizer)."""
        raise NotImplementedError

    def load_tokenizer(self) -> Any:
        """``hf`` backend: the tokenizer (the model loads later, after the resume check)."""
        return load_tokenizer(self.base_path)

    def load_policy(self) -> Any:
        """``hf`` backend: the model to train."""
        raise NotImplementedError

    def trainer_parts(self, args: dict[str, Any]) -> tuple[type, Any, dict[str, Any]]:
        """(TRL trainer class, its config built from ``args``, extra trainer kwargs)."""
        raise NotImplementedError

    def rejected_calls(self) -> dict[tuple[str, str], list[dict[str, str]]] | None:
        """SFT with ``contrast_rows``: the rejected calls of the DPO rows next to the SFT data (``dpo.jsonl`` in the
        data directory or beside the given JSONL file, or the DatasetDict's ``dpo`` split); None otherwise."""
        if self.stage != "sft" or self.cfg.contrast_rows <= 0:
            return None
        path = Path(self.data)
        try:
            dpo = load_rows(path.parent if path.is_file() else path, "dpo")
        except DataError as exc:
            raise DataError(f"sft: contrast_rows takes the rejected calls from the DPO rows: {exc}") from exc
        return rejected_turns(dpo)

    def before_training(self, trainer: Any) -> dict[str, Any]:
        """Checks on the built trainer; returns metrics to record."""
        return {}

    def after_training(self, trainer: Any) -> dict[str, Any]:
        """Checks on the trained model; returns metrics to record."""
        return {}

    # --- the shared steps ---------------------------------------------------------------------------------------

    def run_config(self) -> dict[str, Any]:
        """The resolved run (``train_config.json``, and with the rows' hash the resume fingerprint).

        ``world_size`` appears only with several processes (the data is sharded differently, so a checkpoint of a
        2-process run is not resumed by 1 process); a single-process run's fingerprint is what it always was."""
        out = {"stage": self.stage, "profile": self.profile.name, "stage_config": to_dict(self.cfg),
               "model": self.model, "base_model_path": self.base_path,
               "adapter": str(self.adapter) if self.adapter is not None else None, "backend": self.backend,
               "device": self.device, "seed": self.seed, "data": str(self.data)}
        if self.world["world_size"] > 1:
            out["world_size"] = self.world["world_size"]
        return out

    def run(self) -> StageResult:
        t_start = time.perf_counter()
        self.backend = prepare_backend(self.backend)  # before anything imports trl / transformers / peft
        from datasets import Dataset

        from ..core.models import resolve_model
        from .trl_compat import ensure_fused_lm_head

        self.check_inputs()
        check_report_to(self.profile.report_to)
        self.device = training_device()
        self.world = init_distributed(self.device)  # joins the launcher's process group (no-op for one process)
        lm_head_fallback = ensure_fused_lm_head(self.device)  # from the device, not from whether Triton imports
        self.base_path = main_first(lambda: resolve_model(self.model))  # ``tiny``/``smollm2`` caches built once
        policy, tok = self.load_unsloth() if self.backend == "unsloth" else (None, self.load_tokenizer())
        rows, prep = prepare_rows(load_rows(self.data, self.stage), self.stage, tok, self.cfg, self.seed,
                                  rejected=self.rejected_calls())
        if not rows:
            raise DataError(f"{self.data}: no {self.stage.upper()} row fits {self.cfg.token_budget} tokens "
                            f"({prep.to_dict()})")
        run_cfg = self.run_config()
        # the main process cleans / prepares the checkpoint folder; the others wait for its answer (or its error)
        resume_from = on_main(lambda: resume_point(self.out / CHECKPOINTS, run_fingerprint(run_cfg, rows),
                                                   self.resume))
        if policy is None:
            policy = self.load_policy()
        monitor = ResourceMonitor()
        trainer_cls, args, extra_kwargs = self.trainer_parts(dict(
            output_dir=str(self.out / CHECKPOINTS), seed=self.seed, device=self.device,
            bf16_supported=bf16_supported(self.device), report_to=self.profile.report_to))
        if self.keep_checkpoints:  # every checkpoint stays (the profiles rotate to the newest one)
            args.save_total_limit = None
        trainer = trainer_cls(model=policy, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                              callbacks=[monitor.callback(), *self.callbacks], **extra_kwargs)
        self._place_tracker_logs(trainer)
        extra = {"resumed_from": resume_from, "torch_lm_head_fallback": lm_head_fallback,
                 **self.before_training(trainer)}
        try:
            trainer.train(resume_from_checkpoint=resume_from)
        finally:
            monitor.stop()
        extra.update(self.after_training(trainer))
        return self._finish(trainer, tok, run_cfg, rows, prep, monitor.results, extra, t_start)

    def _place_tracker_logs(self, trainer: Any) -> None:
        """TensorBoard event files go to ``<out>/tensorboard`` (transformers' default, ``<output_dir>/runs``, is
        inside the checkpoint folder that a finished stage removes); ``TENSORBOARD_LOGGING_DIR`` still wins."""
        for cb in getattr(trainer.callback_handler, "callbacks", []):
            if type(cb).__name__ == "TensorBoardCallback" and getattr(cb, "logging_dir", None) is None:
                cb.logging_dir = str(self.out / "tensorboard")

    def _finish(self, trainer: Any, tok: Any, run_cfg: dict[str, Any], rows: list[dict[str, Any]], prep: PrepStats,
                measured: dict[str, Any], extra: dict[str, Any], t_start: float) -> StageResult:
        """Metrics, the stage's files (see ``checkpoints.write_stage_outputs``), checkpoints dropped, the result."""
        model = trainer.accelerator.unwrap_model(trainer.model)
        history = list(trainer.state.log_history)
        losses = [h["loss"] for h in history if "loss" in h]
        metrics = {
            "stage": self.stage,
            "final_loss": losses[-1] if losses else None,
            "first_loss": losses[0] if losses else None,
            "train_loss": next((h["train_loss"] for h in reversed(history) if "train_loss" in h), None),
            "steps": int(trainer.state.global_step),
            "max_steps": int(trainer.state.max_steps),
            "examples": prep.used,
            **measured,
            "wall_seconds": round(time.perf_counter() - t_start, 2),
            "data": prep.to_dict(),
            **extra,
            # the processes that trained, and the one whose numbers (RSS, timings) these are: in train_stats.json
            # always 0, the main process, the only one that writes it (tokens/s counts the tokens of every rank)
            "world_size": self.world["world_size"],
            "rank": self.world["rank"],
        }

        def write() -> None:  # the main process only; the others wait, so every rank returns with the files there
            write_stage_outputs(self.out, model, tok, history, metrics,
                                {**run_cfg, "training_args": trainer.args.to_dict()},
                                f"{self.stage.upper()} ({self.profile.name}, {self.model})")
            if not self.keep_checkpoints:
                remove_checkpoints(self.out)

        on_main(write)
        model.eval()
        return StageResult(stage=self.stage, out_dir=self.out, metrics=metrics, log_history=history,
                           run_config=run_cfg, model=model, tokenizer=tok, rows=rows)
