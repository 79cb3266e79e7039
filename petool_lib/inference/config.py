"""What an evaluation run decodes with: :class:`DecodeConfig` (one mode's decoding bounds) and :class:`EvalConfig`
(modes, decoding, prompt budget, context policy, weights dtype), built once from a profile's ``eval_*`` keys.

Plain dataclasses, no model code: the CLI checks its flags by building an :class:`EvalConfig` before it loads a
model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..core.context import CONTEXT_MODES
from ..core.data import REPO_ROOT

MODES = ("generate", "constrained", "rank")
# Who enforces the call grammar (``constrained``, and ``rank``'s parameters): our token state machine
# (inference.grammar) or xgrammar (inference.xgrammar_call, the same language compiled by the library).
GRAMMARS = ("builtin", "xgrammar")
# How a prompt over the token budget is cut (core.context): ``evidence`` keeps the history items that bear on the
# candidates first, then shortens descriptions if needed; ``oldest`` drops the oldest history items (the reference).
CONTEXTS = CONTEXT_MODES
DEFAULT_CONTEXT = "evidence"
DEVICE_MAPS = ("none", "auto")  # how a local model is placed: on one device, or spread by accelerate (large models)
RANK_WINDOW = 8  # rank rows whose parameters are decoded together (the rest of a batch waits, not yet prefilled)
RANK_BATCH = 4 * RANK_WINDOW  # the rank mode's default prompts per batch on the hf predictor
GENERATION_RESERVE = 256  # tokens kept for the answer when the budget defaults to the model's context window
# profile key -> EvalConfig field (``decode.X``: a DecodeConfig field)
PROFILE_KEYS: dict[str, str] = {
    "eval_modes": "modes", "eval_max_prompt_tokens": "max_prompt_tokens", "eval_context": "context",
    "eval_dtype": "dtype", "eval_max_value_chars": "decode.max_value_chars", "eval_device_map": "device_map",
    "eval_grammar": "decode.grammar",
}


def parse_device_map(value: str | None) -> str | None:
    """``None`` / ``"none"`` -> None (the model on one device); ``"auto"`` -> ``"auto"``; anything else an error."""
    if value is None or value == "none":
        return None
    if value not in DEVICE_MAPS:
        raise ValueError(f"unknown device_map {value!r}; expected one of {DEVICE_MAPS}")
    return value


@dataclass
class DecodeConfig:
    """Decoding parameters (all of them are part of the prediction-cache key)."""

    max_new_tokens: int = 128
    max_value_chars: int = 128
    max_number_chars: int = 20
    rank_score: str = "sum"  # sum | mean of the candidate-name token log-probabilities
    grammar: str = "xgrammar"  # constrained and rank's parameters: xgrammar | builtin (GRAMMARS)

    def __post_init__(self) -> None:
        if self.grammar not in GRAMMARS:
            raise ValueError(f"unknown grammar {self.grammar!r}; expected one of {GRAMMARS}")

    def key(self, mode: str) -> dict[str, Any]:
        d = asdict(self)
        if mode == "generate":
            return {"max_new_tokens": d["max_new_tokens"]}
        d.pop("max_new_tokens")
        if mode == "constrained":
            d.pop("rank_score")
        if d["grammar"] == "builtin":  # the built-in grammar's keys are those of the runs made before the option
            d.pop("grammar")
        return d


def parse_modes(modes: str | Sequence[str]) -> tuple[str, ...]:
    """``"generate, rank"`` or ``["generate", "rank"]`` -> ``("generate", "rank")``; an unknown mode is an error."""
    items = modes.split(",") if isinstance(modes, str) else list(modes)
    out = tuple(m.strip() for m in items if m and m.strip())
    unknown = [m for m in out if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; expected some of {MODES}")
    if not out:
        raise ValueError(f"no mode given; expected some of {MODES}")
    return out


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation's settings, shared by notebook 05 (:meth:`from_profile`) and the predict CLI.

    - ``modes``: decoding modes to run (``generate``, ``constrained``, ``rank``); a comma string is accepted.
    - ``decode``: the decoding bounds of every mode.
    - ``max_prompt_tokens``: the prompt budget in tokens; ``None``: the model's context window minus
      ``max(decode.max_new_tokens, 256)`` where the predictor knows its window (:meth:`prompt_budget`), else none.
    - ``context``: how an over-budget prompt is cut: ``evidence`` (default; evidence items first, then the items
      most related to the query, then shorter descriptions) or ``oldest`` (drop the oldest items; the reference).
    - ``dtype``: weights dtype of a local model (``auto``: bf16 on GPU and on CPUs with native bf16, else fp32).
    - ``device_map``: placement of a local model: ``None`` (default; ``none`` in a profile) = one device; ``auto`` =
      spread over every GPU, then CPU RAM, by accelerate (large local models; profile key ``eval_device_map``).
    """

    modes: tuple[str, ...] = ("constrained",)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    max_prompt_tokens: int | None = None
    context: str = DEFAULT_CONTEXT
    dtype: str | None = "auto"
    device_map: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", parse_modes(self.modes))
        object.__setattr__(self, "device_map", parse_device_map(self.device_map))
        if self.context not in CONTEXTS:
            raise ValueError(f"unknown context mode {self.context!r}; expected one of {CONTEXTS}")
        if self.max_prompt_tokens is not None and int(self.max_prompt_tokens) < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1 (or None), got {self.max_prompt_tokens}")

    @classmethod
    def from_profile(cls, params: Mapping[str, Any]) -> "EvalConfig":
        """From a profile's (or a notebook's parameters') ``eval_*`` keys; absent keys keep the defaults.

        Reads ``eval_modes``, ``eval_max_prompt_tokens``, ``eval_max_value_chars``, ``eval_dtype``,
        ``eval_device_map`` and ``eval_context``; every other key is ignored (e.g. ``eval_limit``, which chooses
        entries, not decoding).
        """
        kwargs: dict[str, Any] = {}
        decode: dict[str, Any] = {}
        for key, name in PROFILE_KEYS.items():
            if key in params:
                if name.startswith("decode."):
                    decode[name.removeprefix("decode.")] = params[key]
                else:
                    kwargs[name] = params[key]
        return cls(decode=DecodeConfig(**decode), **kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "EvalConfig":
        """From a profile YAML's ``eval_*`` keys (an error names the file when it is not a mapping)."""
        import yaml

        with open(path, encoding="utf-8") as fh:
            params = yaml.safe_load(fh) or {}
        if not isinstance(params, dict):
            raise ValueError(f"{path}: a profile must be a mapping of parameter names to values")
        return cls.from_profile(params)

    def with_modes(self, *modes: str) -> "EvalConfig":
        """The same configuration with other modes (e.g. ``generate`` for an endpoint)."""
        return replace(self, modes=modes)

    def prompt_budget(self, context_window: int | None) -> int | None:
        """``max_prompt_tokens``, or the context window minus the generation reserve when no budget is set."""
        if self.max_prompt_tokens is not None:
            return int(self.max_prompt_tokens)
        if context_window:
            return context_window - max(self.decode.max_new_tokens, GENERATION_RESERVE)
        return None


def profile_eval_config(name_or_path: str | Path) -> EvalConfig:
    """:meth:`EvalConfig.from_yaml` of ``configs/<name>.yaml`` (``tiny``, ``cpu``, ``paper``) or of a YAML path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = REPO_ROOT / "configs" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no profile {name_or_path!r} (looked for {path})")
    return EvalConfig.from_yaml(path)
