"""Every knob of a synthesis run (:class:`SynthConfig`) and its validation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .grouping import DEFAULT_MAX_SIZE, DEFAULT_THRESHOLD
from .histories import PROMPT_HISTORY_LIMIT
from .holdout import HOLDOUTS
from .llm import LLMS

# run-local settings: where files go and how the run reports progress; they never change what is synthesized
NOT_RECORDED = ("out", "cache_dir", "progress", "dry_run", "test_set")


@dataclass
class SynthConfig:
    """Every knob of a synthesis run (recorded in the manifest, except the output/cache paths and progress).

    ``llm`` is the synthesis LLM (:data:`~petool_lib.synthesis.llm.LLMS`): ``offline`` | ``openai`` | ``hf``.
    """

    tools: str = "sample"
    out: str = "outputs/synth"
    llm: str = "offline"
    model: str | None = None
    seed: int = 0
    train: int = 3000
    test: int = 100
    holdout: str = "strict"
    test_set: str | None = None
    n_candidates: int = 10
    group_threshold: float = DEFAULT_THRESHOLD
    max_group_size: int = DEFAULT_MAX_SIZE
    test_group_fraction: float = 0.2
    instructions_per_api: int = 3
    noise: float = 0.3
    concentration: float = 0.5
    history_limit: int = PROMPT_HISTORY_LIMIT
    embedding: str = "auto"
    llm_limit: int | None = None
    llm_max_tokens: int | None = None
    concurrency: int = 4
    cache_dir: str | None = None
    progress: bool = True
    dry_run: bool = False

    def recorded(self) -> dict[str, Any]:
        """The parameters the manifest records: every field but :data:`NOT_RECORDED`."""
        d = asdict(self)
        for k in NOT_RECORDED:
            d.pop(k)
        return d

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting."""
        if self.holdout not in HOLDOUTS:
            raise ValueError(f"unknown holdout {self.holdout!r}; expected one of {HOLDOUTS}")
        if self.llm not in LLMS:
            raise ValueError(f"unknown llm {self.llm!r}; expected one of {LLMS}")
        if self.train < 0 or self.test < 0:
            raise ValueError("--train and --test must be >= 0")
