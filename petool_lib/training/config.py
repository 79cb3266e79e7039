"""Training profiles as typed dataclasses, and their translation to TRL / PEFT configs and to Unsloth kwargs.

Three profiles:

* ``paper`` — the reference configs of the paper (LLaMA-Factory, GPU): SFT LoRA rank 8, lr 1e-4, 1 epoch,
  batch 2×8, warmup 0.1, cosine, cutoff 4,096; DPO LoRA rank 8, sigmoid loss, beta 0.1, lr 5e-6, 1 epoch,
  batch 1×32.
* ``cpu`` — SmolLM2-135M on 2 CPU cores: histories trimmed so that every row fits 1,280 tokens (rows that cannot
  are skipped and counted), 64 SFT rows and 10 DPO pairs, bf16 autocast; minutes per stage.
* ``tiny`` — the random tiny LLaMA used by the tests (seconds).

Nothing here imports torch, TRL or PEFT at module level: the Unsloth path must import ``unsloth`` first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

LLAMA_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
STAGES: tuple[str, ...] = ("sft", "dpo")
TOO_LONG_POLICIES: tuple[str, ...] = ("skip", "keep")


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapter shape. ``all-linear`` = every linear layer except the output head (PEFT's meaning)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"
    modules_to_save: tuple[str, ...] = ()  # extra fully-trained modules (PEFT's modules_to_save), e.g. ("norm",)


@dataclass(frozen=True)
class StageConfig:
    """Hyper-parameters of one stage (SFT or DPO).

    ``token_budget``: every row (chat-templated system + user + assistant) is made to fit this many tokens by
    dropping the oldest history items (never the query, the candidates or the format text); ``None`` = no
    trimming. Rows that do not fit even with an empty history are skipped (``too_long="skip"``, counted in the
    stats) or kept whole (``"keep"``: truncation is disabled, so they train at full length).
    """

    learning_rate: float
    epochs: float = 1.0
    batch_size: int = 1
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    token_budget: int | None = None
    too_long: str = "skip"
    max_examples: int | None = None
    max_steps: int | None = None
    beta: float = 0.1  # DPO only
    loss_type: str = "sigmoid"  # DPO only
    logging_steps: int = 1
    save_steps: int = 10
    gradient_checkpointing: bool = False
    bf16: bool | None = None  # mixed precision; None = bf16 on GPUs that support it (else fp16), fp32 on CPU
    lora: LoraSpec = field(default_factory=LoraSpec)

    def __post_init__(self) -> None:
        if self.too_long not in TOO_LONG_POLICIES:
            raise ValueError(f"too_long must be one of {TOO_LONG_POLICIES}, got {self.too_long!r}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (or None), got {self.max_steps}")

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum


@dataclass(frozen=True)
class Profile:
    """A named pair of stage configs plus model-loading choices."""

    name: str
    description: str
    sft: StageConfig
    dpo: StageConfig
    load_in_4bit: bool = False  # GPU/Unsloth only
    default_model: str = "smollm2"

    def stage(self, stage: str) -> StageConfig:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        return self.sft if stage == "sft" else self.dpo


PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper",
        description="Paper reference configs (GPU): SFT r8 lr1e-4 1ep 2x8 warmup0.1 cosine cutoff4096; "
        "DPO r8 beta0.1 lr5e-6 1ep 1x32",
        sft=StageConfig(learning_rate=1e-4, epochs=1, batch_size=2, grad_accum=8, warmup_ratio=0.1,
                        token_budget=4096, logging_steps=10, save_steps=100, gradient_checkpointing=True),
        dpo=StageConfig(learning_rate=5e-6, epochs=1, batch_size=1, grad_accum=32, warmup_ratio=0.1, beta=0.1,
                        token_budget=4096, logging_steps=5, save_steps=50, gradient_checkpointing=True),
        load_in_4bit=True,
        default_model="unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
    ),
    "cpu": Profile(
        name="cpu",
        description="SmolLM2-135M on 2 CPU cores: rows trimmed to 1,280 tokens, 64 SFT rows / 10 DPO pairs, "
        "bf16 autocast, minutes per stage",
        # measured (quiet 2 cores): SFT ~210 input tokens/s (~6 s per row), DPO ~160 (~16 s per pair incl. the
        # reference pass); warmup 0 because with 16 / 5 steps a warmup step would run at lr 0.
        # token_budget 1280: the synthesized prompts with an EMPTY history are
        # >= ~1,010 tokens (10 candidate tool docs), so ~1k is the floor; ~20% of rows fit 1280, the rest are skipped
        sft=StageConfig(learning_rate=3e-4, epochs=1, batch_size=1, grad_accum=4, warmup_ratio=0.0,
                        token_budget=1280, max_examples=64, logging_steps=1, save_steps=4, bf16=True),
        dpo=StageConfig(learning_rate=5e-5, epochs=1, batch_size=1, grad_accum=2, warmup_ratio=0.0, beta=0.1,
                        token_budget=1280, max_examples=10, logging_steps=1, save_steps=2, bf16=True),
    ),
    "tiny": Profile(
        name="tiny",
        description="Random tiny LLaMA for tests: seconds per stage",
        sft=StageConfig(learning_rate=5e-3, epochs=1, batch_size=2, grad_accum=1, warmup_ratio=0.0,
                        token_budget=1536, max_examples=8, logging_steps=1, save_steps=2),
        dpo=StageConfig(learning_rate=5e-3, epochs=1, batch_size=2, grad_accum=1, warmup_ratio=0.0, beta=0.1,
                        token_budget=1536, max_examples=8, logging_steps=1, save_steps=2),
        default_model="tiny",
    ),
}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ValueError(f"unknown training profile {name!r}; expected one of {sorted(PROFILES)}")
    return PROFILES[name]


def stage_config(profile: str | Profile, stage: str, **overrides: Any) -> StageConfig:
    """The stage config of a profile with ``overrides`` applied (``None`` values are ignored)."""
    prof = get_profile(profile) if isinstance(profile, str) else profile
    cfg = prof.stage(stage)
    lora_over = overrides.pop("lora", None)
    unknown = set(overrides) - set(StageConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown stage config keys: {sorted(unknown)}")
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if lora_over:
        cfg = replace(cfg, lora=replace(cfg.lora, **lora_over))
    return cfg


def to_dict(obj: Any) -> dict[str, Any]:
    """JSON-friendly dict of a profile / stage config."""
    return asdict(obj)


# --- translation -------------------------------------------------------------------------------------------


def precision(cfg: StageConfig, device: str, bf16_supported: bool = True) -> tuple[bool, bool]:
    """(bf16, fp16) mixed-precision flags: GPU → bf16 where supported else fp16; CPU → fp32 unless ``cfg.bf16``
    (bf16 autocast: about twice the matmul throughput on CPUs with AVX512-BF16)."""
    if device == "cuda":
        bf16 = bf16_supported if cfg.bf16 is None else (cfg.bf16 and bf16_supported)
        return bf16, not bf16
    return bool(cfg.bf16), False


def _common_args(cfg: StageConfig, output_dir: str, seed: int, device: str, bf16_supported: bool) -> dict[str, Any]:
    on_gpu = device == "cuda"
    bf16, fp16 = precision(cfg, device, bf16_supported)
    return dict(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio of the total steps (transformers 5)
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=1,
        seed=seed,
        data_seed=seed,
        report_to="none",
        use_cpu=not on_gpu,
        bf16=bf16,
        fp16=fp16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
    )


def sft_kwargs(cfg: StageConfig, output_dir: str, seed: int = 0, device: str = "cpu",
               bf16_supported: bool = True) -> dict[str, Any]:
    """Keyword arguments of ``trl.SFTConfig``: prompt-completion data, loss on the completion only."""
    return dict(
        _common_args(cfg, output_dir, seed, device, bf16_supported),
        completion_only_loss=True,  # loss on the assistant tool call only
        max_length=None,  # rows are made to fit token_budget beforehand; never truncate the completion
        packing=False,
    )


def dpo_kwargs(cfg: StageConfig, output_dir: str, seed: int = 0, device: str = "cpu",
               bf16_supported: bool = True) -> dict[str, Any]:
    """Keyword arguments of ``trl.DPOConfig`` (sigmoid loss, beta)."""
    return dict(
        _common_args(cfg, output_dir, seed, device, bf16_supported),
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        max_length=None,
        precompute_ref_log_probs=False,
    )


def sft_config(cfg: StageConfig, output_dir: str, seed: int = 0, device: str = "cpu", bf16_supported: bool = True) -> Any:
    from trl import SFTConfig

    return SFTConfig(**sft_kwargs(cfg, output_dir, seed, device, bf16_supported))


def dpo_config(cfg: StageConfig, output_dir: str, seed: int = 0, device: str = "cpu", bf16_supported: bool = True) -> Any:
    from trl import DPOConfig

    return DPOConfig(**dpo_kwargs(cfg, output_dir, seed, device, bf16_supported))


def lora_kwargs(spec: LoraSpec) -> dict[str, Any]:
    target = spec.target_modules if isinstance(spec.target_modules, str) else list(spec.target_modules)
    out = dict(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=target,
               bias="none", task_type="CAUSAL_LM")
    if spec.modules_to_save:
        out["modules_to_save"] = list(spec.modules_to_save)
    return out


def lora_config(spec: LoraSpec) -> Any:
    from peft import LoraConfig

    return LoraConfig(**lora_kwargs(spec))


def unsloth_load_kwargs(model_name: str, cfg: StageConfig, load_in_4bit: bool) -> dict[str, Any]:
    """Keyword arguments of ``unsloth.FastLanguageModel.from_pretrained``."""
    return dict(
        model_name=model_name,
        max_seq_length=cfg.token_budget or 4096,
        dtype=None,  # Unsloth picks bf16 where supported, else fp16
        load_in_4bit=load_in_4bit,
    )


def unsloth_peft_kwargs(cfg: StageConfig, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of ``unsloth.FastLanguageModel.get_peft_model`` (same LoRA as the hf path).

    ``all-linear`` becomes the explicit LLaMA projection list, the form every Unsloth release accepts.
    """
    spec = cfg.lora
    target = list(LLAMA_PROJECTIONS) if spec.target_modules == "all-linear" else list(spec.target_modules)
    return dict(
        r=spec.r,
        target_modules=target,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        bias="none",
        use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False,
        random_state=seed,
        use_rslora=False,
        loftq_config=None,
        max_seq_length=cfg.token_budget or 4096,
    )
