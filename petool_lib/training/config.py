"""Training profiles: the ``training:`` recipe of a profile YAML as typed dataclasses, and their translation to
TRL / PEFT configs and to Unsloth kwargs (one hop: YAML -> :class:`Profile` / :class:`StageConfig` -> TRL config).

The hyper-parameters live in ``configs/<name>.yaml`` (the same file ``make reproduce PROFILE=<name>`` runs), under
a ``training:`` mapping::

    training:
      description: ...
      load_in_4bit: false        # GPU/Unsloth only
      default_model: smollm2     # the CLI's model when --model is not given
      report_to: none            # none | tensorboard | trackio | wandb, or a list (the CLI's --report-to overrides)
      sft: {learning_rate: 3.0e-4, grad_accum: 4, token_budget: 1280, ...}   # StageConfig fields (+ lora: {...})
      dpo: {learning_rate: 5.0e-5, beta: 0.1, ...}

:func:`load_training_profile` reads it (``tiny`` / ``cpu`` / ``paper`` or any YAML path) and checks every key and
type, naming the file and the key on an error. Unset keys take the :class:`StageConfig` / :class:`LoraSpec`
defaults. The shipped profiles:

* ``paper`` — the reference configs of the paper (LLaMA-Factory, GPU): SFT LoRA rank 8, lr 1e-4, 1 epoch,
  batch 2×8, warmup 0.1, cosine, cutoff 4,096; DPO LoRA rank 8, sigmoid loss, beta 0.1, lr 5e-6, 1 epoch,
  batch 1×32.
* ``cpu`` — SmolLM2-135M on 2 CPU cores (``make reproduce``): ``cpu-long``'s recipe on 128 SFT rows and 16 DPO
  pairs; about 15 minutes of training.
* ``cpu-long`` — the best CPU recipe measured (about 2 hours with its evaluation): 256 answer-shown SFT rows
  (providers renamed, loss on the tool name, ``compact`` prompts at 2,048 tokens, LoRA on the top 10 layers), then
  48 DPO pairs at lr 1e-4 with the SFT loss kept.
* ``tiny`` — the random tiny LLaMA used by the tests (seconds).

Nothing here imports torch, TRL or PEFT at module level: the Unsloth path must import ``unsloth`` first.
"""

from __future__ import annotations

import importlib.util
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

from ..core.context import CONTEXT_MODES
from ..core.data import normalize_setting
from ..harness.cases import CASES
from ..harness.probes import RENAME_STYLES

LLAMA_PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
STAGES: tuple[str, ...] = ("sft", "dpo")
TOO_LONG_POLICIES: tuple[str, ...] = ("skip", "keep")
TARGETS = ("call", "name")  # what a stage's loss is on (StageConfig.target)
PROFILE_NAMES: tuple[str, ...] = ("tiny", "cpu", "cpu-long", "paper")  # configs/<name>.yaml
POLICY_ADAPTER = "default"  # the trained LoRA adapter of a PeftModel (PEFT's default name)
REF_ADAPTER = "ref"  # DPO: TRL's frozen copy of the SFT adapter, the reference model
# experiment trackers a profile may send the training logs to (transformers' report_to), each with the packages
# that provide it (any one); none of them is a requirement of this repository
REPORTERS: dict[str, tuple[str, ...]] = {"tensorboard": ("tensorboard", "tensorboardX"), "trackio": ("trackio",),
                                         "wandb": ("wandb",)}
REPORT_TO: tuple[str, ...] = ("none", *REPORTERS)


class ProfileError(ValueError):
    """A training profile that cannot be loaded: the message names the file and the key."""


def parse_report_to(value: Any) -> tuple[str, ...]:
    """``none`` / ``tensorboard`` / ``"tensorboard,trackio"`` / a list -> the trackers as a tuple (``()`` = none).

    Raises ValueError for an unknown name, a non-string, or ``none`` combined with a tracker."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise ValueError(f"report_to must be a name or a list of names from {REPORT_TO}, got {value!r}")
    names = tuple(dict.fromkeys(x.strip() for x in items if x.strip()))
    unknown = [n for n in names if n not in REPORT_TO]
    if unknown:
        raise ValueError(f"report_to: unknown tracker(s) {unknown}; expected none or some of {tuple(REPORTERS)}")
    if "none" in names and len(names) > 1:
        raise ValueError(f"report_to: 'none' cannot be combined with a tracker, got {list(names)}")
    return tuple(n for n in names if n != "none")


def check_report_to(report_to: Sequence[str]) -> None:
    """Raise :class:`ProfileError` when a chosen tracker's package is not installed (before anything loads)."""
    for name in parse_report_to(report_to):
        packages = REPORTERS[name]
        if not any(importlib.util.find_spec(p) is not None for p in packages):
            raise ProfileError(f"report_to {name}: the {' or '.join(packages)} package is not installed "
                               f"(pip install {packages[0]}; it is not in requirements.txt), or set report_to: none "
                               "in the profile / --report-to none")


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapter shape. ``all-linear`` = every linear layer except the output head (PEFT's meaning)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"
    modules_to_save: tuple[str, ...] = ()  # extra fully-trained modules (PEFT's modules_to_save), e.g. ("norm",)
    # adapt only the last N decoder layers (PEFT's layers_to_transform); None = every layer. The layers below carry
    # no trainable weight, so the backward pass stops at the lowest adapted layer (fewer FLOPs per token).
    top_layers: int | None = None

    def __post_init__(self) -> None:
        if self.top_layers is not None and self.top_layers < 1:
            raise ValueError(f"lora.top_layers must be >= 1 (or null for every layer), got {self.top_layers}")

    def layers_to_transform(self, num_layers: int | None) -> list[int] | None:
        """The decoder-layer indices to adapt in a model with ``num_layers`` layers (None = all)."""
        if self.top_layers is None:
            return None
        if not num_layers:
            raise ValueError("lora.top_layers needs the model's number of decoder layers")
        return list(range(max(0, num_layers - self.top_layers), num_layers))


@dataclass(frozen=True)
class StageConfig:
    """Hyper-parameters of one stage (SFT or DPO).

    ``token_budget``: every row (chat-templated system + user + assistant) is made to fit this many tokens by the
    same context builder as inference (:func:`petool_lib.core.context.fit_prompt`; ``context="evidence"``: the
    history items that carry evidence for the candidate list are kept first, descriptions shortened before one of
    them is dropped; ``"oldest"``: the oldest items go first); never the query, a candidate or the format text;
    ``None`` = no fitting. Rows that still do not fit are skipped (``too_long="skip"``, counted in the stats) or
    kept whole (``"keep"``: truncation is disabled, so they train at full length).
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
    context: str = "evidence"  # how rows are fitted to token_budget (core.context.CONTEXT_MODES)
    settings: tuple[str, ...] | None = None  # train only on rows of these settings (e.g. ("ratings",)); None = all
    # train only on rows of these decision cases (harness.cases.CASES: what the history shows about the answer's
    # provider, the row's ``case`` field written by ``synthesize``), e.g. ("visible", "switch"): the rows whose answer
    # the history shows positively; the others are counted as filtered; None = all rows
    cases: tuple[str, ...] | None = None
    # fraction of rows whose providers are renamed (harness.probes.rename_row, seeded per row) before fitting: a
    # provider's name then carries no prior, only the history tells which one the user prefers; 0 = none
    rename_providers: float = 0.0
    # how a renamed row's providers are renamed (harness.probes.RENAME_STYLES): ``name``, a fresh unrelated name per
    # provider; ``words``, each distinctive word replaced consistently, so versions of one service (``Spotify``,
    # ``Spotify_v3``) stay near-duplicates as in PEToolBench
    rename_style: str = "name"
    # fraction of the used rows each followed by its contrast row (training.contrast.flip_row: the same row with the
    # ratings / the order of the answer's and the rejected provider's history items flipped, and the rejected call
    # as the answer), so that only the rating / the order tells the two apart; the contrast rows come on top of
    # max_examples (counted in the stats); SFT takes the rejected calls from dpo.jsonl next to sft.jsonl; 0 = none
    contrast_rows: float = 0.0
    # what the loss is on: the whole call (``call``, the paper's) or only its tool name (``name``: every completion
    # cut after ``{"tool_name": "NAME"``, so the gradient is all on the choice of tool; an ablation for the rank mode,
    # which reads the model only for the name and generates the parameters under the grammar)
    target: str = "call"
    max_examples: int | None = None
    max_steps: int | None = None
    beta: float = 0.1  # DPO only
    loss_type: str = "sigmoid"  # DPO only
    # DPO only: weight of an NLL term on the chosen completion added to the preference loss (RPO; LLaMA-Factory's
    # ``pref_ftx``; TRL ``loss_type=[loss_type, "sft"]``), which keeps the SFT behaviour (here: the function match)
    # while the pairs move the provider choice; 0 = the paper's pure preference loss
    sft_weight: float = 0.0
    logging_steps: int = 1
    save_steps: int = 10
    gradient_checkpointing: bool = False
    bf16: bool | None = None  # mixed precision; None = bf16 on GPUs that support it (else fp16), fp32 on CPU
    lora: LoraSpec = field(default_factory=LoraSpec)

    def __post_init__(self) -> None:
        if self.settings is not None:
            try:
                object.__setattr__(self, "settings", tuple(normalize_setting(x) for x in self.settings))
            except ValueError as exc:
                raise ValueError(f"settings: {exc}") from None
            if not self.settings:
                raise ValueError("settings must name at least one setting (or be None for all)")
        if self.cases is not None:
            bad = [c for c in self.cases if c not in CASES]
            if bad or not self.cases:
                raise ValueError(f"cases must name some of {CASES} (or be None for all), got {list(self.cases)}")
            object.__setattr__(self, "cases", tuple(dict.fromkeys(self.cases)))
        if self.context not in CONTEXT_MODES:
            raise ValueError(f"context must be one of {CONTEXT_MODES}, got {self.context!r}")
        if not 0.0 <= float(self.rename_providers) <= 1.0:
            raise ValueError(f"rename_providers must be a fraction in [0, 1], got {self.rename_providers!r}")
        if not 0.0 <= float(self.contrast_rows) <= 1.0:
            raise ValueError(f"contrast_rows must be a fraction in [0, 1], got {self.contrast_rows!r}")
        if self.rename_style not in RENAME_STYLES:
            raise ValueError(f"rename_style must be one of {RENAME_STYLES}, got {self.rename_style!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.too_long not in TOO_LONG_POLICIES:
            raise ValueError(f"too_long must be one of {TOO_LONG_POLICIES}, got {self.too_long!r}")
        if not self.sft_weight >= 0.0:
            raise ValueError(f"sft_weight must be >= 0, got {self.sft_weight!r}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (or None), got {self.max_steps}")

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum


@dataclass(frozen=True)
class Profile:
    """The ``training:`` recipe of a profile YAML: a pair of stage configs plus model-loading choices."""

    name: str  # the YAML's stem: tiny | cpu | paper | ...
    description: str
    sft: StageConfig
    dpo: StageConfig
    load_in_4bit: bool = False  # GPU/Unsloth only
    default_model: str = "smollm2"
    source: str = ""  # the YAML file it was read from
    # trackers the Trainer logs to (transformers' report_to); () = none. Not part of the resume fingerprint: where
    # the logs go does not change the training.
    report_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "report_to", parse_report_to(self.report_to))

    def stage(self, stage: str) -> StageConfig:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        return self.sft if stage == "sft" else self.dpo


# --- loading -----------------------------------------------------------------------------------------------


def profile_path(name_or_path: str | Path) -> Path:
    """``tiny`` / ``cpu`` / ``paper`` (any bare name) -> ``<repo>/configs/<name>.yaml``; anything else is a path."""
    from ..core.data import REPO_ROOT

    text = str(name_or_path)
    bare = isinstance(name_or_path, str) and Path(text).name == text and Path(text).suffix not in (".yaml", ".yml")
    path = REPO_ROOT / "configs" / f"{text}.yaml" if bare else Path(name_or_path)
    if not path.is_file():
        known = ", ".join(PROFILE_NAMES)
        raise ProfileError(f"training profile {text!r}: {path} not found (expected one of {known} or a YAML path)")
    return path


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against a dataclass field type (YAML lists become tuples); raises :class:`ProfileError`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_value(value, arg, where)
            except ProfileError:
                continue
    elif origin is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, hint):
        return value
    numeric = hint is float or float in args
    why = " (YAML reads 1e-4 as a string: write 1.0e-4)" if numeric and isinstance(value, str) else ""
    raise ProfileError(f"{where}: expected {_hint_name(hint)}, got {value!r}{why}")


def _build(cls: type, raw: Any, where: str, nested: dict[str, type] | None = None) -> Any:
    """``cls(**raw)`` with every key and value checked (``nested``: keys that are themselves dataclasses)."""
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a mapping of {cls.__name__} keys, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {unknown}; expected some of {known}")
    kwargs = {}
    for key, value in raw.items():
        sub = (nested or {}).get(key)
        kwargs[key] = _build(sub, value, f"{where}.{key}") if sub else _check_value(value, hints[key], f"{where}.{key}")
    missing = [f.name for f in fields(cls) if f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ProfileError(f"{where}: missing key(s) {missing}")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ProfileError(f"{where}: {exc}") from exc


def load_training_profile(name_or_path: str | Path) -> Profile:
    """The ``training:`` mapping of a profile YAML (``tiny`` / ``cpu`` / ``paper`` or a path), checked.

    Errors (:class:`ProfileError`) name the file and the key: a missing ``training:`` mapping, an unknown or
    missing key, a value of the wrong type, a value a :class:`StageConfig` refuses.
    """
    import yaml

    path = profile_path(name_or_path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML ({exc})") from exc
    raw = doc.get("training") if isinstance(doc, dict) else None
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: no 'training:' mapping (description, load_in_4bit, default_model, sft, dpo)")
    where = f"{path}: training"
    allowed = {"description": str, "load_in_4bit": bool, "default_model": str, "report_to": object, "sft": dict,
               "dpo": dict}
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {unknown}; expected {sorted(allowed)}")
    missing = [k for k in STAGES if k not in raw]
    if missing:
        raise ProfileError(f"{where}: missing key(s) {missing}")
    top = {k: _check_value(raw[k], allowed[k], f"{where}.{k}") for k in ("description", "load_in_4bit", "default_model")
           if k in raw}
    if "report_to" in raw:
        try:
            top["report_to"] = parse_report_to(raw["report_to"])
        except ValueError as exc:
            raise ProfileError(f"{where}.report_to: {exc}") from None
    stages = {s: _build(StageConfig, raw[s], f"{where}.{s}", nested={"lora": LoraSpec}) for s in STAGES}
    return Profile(name=path.stem, description=top.pop("description", ""), source=str(path), **top, **stages)


def stage_config(profile: str | Path | Profile, stage: str, **overrides: Any) -> StageConfig:
    """The stage config of a profile (a :class:`Profile`, or a name / YAML path to load) with ``overrides`` applied
    (``None`` values are ignored; ``lora`` takes a dict of :class:`LoraSpec` fields)."""
    prof = profile if isinstance(profile, Profile) else load_training_profile(profile)
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


def _common_args(cfg: StageConfig, output_dir: str, seed: int, device: str, bf16_supported: bool,
                 report_to: Sequence[str] = ()) -> dict[str, Any]:
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
        report_to=list(parse_report_to(report_to)) or "none",
        use_cpu=not on_gpu,
        bf16=bf16,
        fp16=fp16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        # several processes (accelerate launch): every LoRA weight takes part in every forward, so DDP need not
        # search the graph for unused parameters (it warns and slows each step when it does)
        ddp_find_unused_parameters=False,
    )


def sft_kwargs(cfg: StageConfig, output_dir: str, seed: int = 0, device: str = "cpu",
               bf16_supported: bool = True, report_to: Sequence[str] = ()) -> dict[str, Any]:
    """Keyword arguments of ``trl.SFTConfig``: prompt-completion data, loss on the completion only."""
    return dict(
        _common_args(cfg, output_dir, seed, device, bf16_supported, report_to),
        completion_only_loss=True,  # loss on the assistant tool call only
        max_length=None,  # rows are made to fit token_budget beforehand; never truncate the completion
        packing=False,
    )


def dpo_kwargs(cfg: StageConfig, output_dir: str, seed: int = 0, device: str = "cpu",
               bf16_supported: bool = True, report_to: Sequence[str] = ()) -> dict[str, Any]:
    """Keyword arguments of ``trl.DPOConfig`` (sigmoid loss, beta; with ``sft_weight`` > 0 plus TRL's ``sft`` loss
    on the chosen completion, weighted)."""
    rpo = cfg.sft_weight > 0
    return dict(
        _common_args(cfg, output_dir, seed, device, bf16_supported, report_to),
        beta=cfg.beta,
        loss_type=[cfg.loss_type, "sft"] if rpo else [cfg.loss_type],
        **({"loss_weights": [1.0, float(cfg.sft_weight)]} if rpo else {}),
        max_length=None,
        precompute_ref_log_probs=False,
    )


def sft_config(cfg: StageConfig, output_dir: str, seed: int = 0, device: str = "cpu", bf16_supported: bool = True,
               report_to: Sequence[str] = ()) -> Any:
    from trl import SFTConfig

    return SFTConfig(**sft_kwargs(cfg, output_dir, seed, device, bf16_supported, report_to))


def dpo_config(cfg: StageConfig, output_dir: str, seed: int = 0, device: str = "cpu", bf16_supported: bool = True,
               report_to: Sequence[str] = ()) -> Any:
    from trl import DPOConfig

    return DPOConfig(**dpo_kwargs(cfg, output_dir, seed, device, bf16_supported, report_to))


def lora_kwargs(spec: LoraSpec, num_layers: int | None = None) -> dict[str, Any]:
    """PEFT ``LoraConfig`` keyword arguments; ``num_layers`` (the model's decoder layers) is needed with
    ``top_layers``."""
    target = spec.target_modules if isinstance(spec.target_modules, str) else list(spec.target_modules)
    out = dict(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=target,
               bias="none", task_type="CAUSAL_LM")
    if spec.modules_to_save:
        out["modules_to_save"] = list(spec.modules_to_save)
    layers = spec.layers_to_transform(num_layers)
    if layers is not None:  # PEFT takes layers_to_transform only with an explicit module list
        out["target_modules"] = list(LLAMA_PROJECTIONS) if target == "all-linear" else target
        out["layers_to_transform"] = layers
        out["layers_pattern"] = "layers"  # model.layers.<i> in LLaMA-style decoders
    return out


def lora_config(spec: LoraSpec, num_layers: int | None = None) -> Any:
    from peft import LoraConfig

    return LoraConfig(**lora_kwargs(spec, num_layers))


def unsloth_load_kwargs(model_name: str, cfg: StageConfig, load_in_4bit: bool) -> dict[str, Any]:
    """Keyword arguments of ``unsloth.FastLanguageModel.from_pretrained``."""
    return dict(
        model_name=model_name,
        max_seq_length=cfg.token_budget or 4096,
        dtype=None,  # Unsloth picks bf16 where supported, else fp16
        load_in_4bit=load_in_4bit,
    )


def unsloth_peft_kwargs(cfg: StageConfig, seed: int = 0, num_layers: int | None = None) -> dict[str, Any]:
    """Keyword arguments of ``unsloth.FastLanguageModel.get_peft_model`` (same LoRA as the hf path).

    ``all-linear`` becomes the explicit LLaMA projection list, the form every Unsloth release accepts.
    """
    spec = cfg.lora
    target = list(LLAMA_PROJECTIONS) if spec.target_modules == "all-linear" else list(spec.target_modules)
    out = dict(
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
    layers = spec.layers_to_transform(num_layers)
    if layers is not None:
        out["layers_to_transform"] = layers
    return out
